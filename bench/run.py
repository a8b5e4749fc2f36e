"""chimeproxy benchmark: the server against a bare-ASGI baseline measured in the same run.

    .venv/bin/python -m bench [--quick] [--out bench/results/latest.json]

Seeds a fresh SQLite database in a temporary directory (bulk inserts straight into the store:
see bench/seed.py for exactly what), and with --postgres a PostgreSQL database of its own
(dropped at the end), starts chimeproxy on it in strict SigV4 mode and a bare
ASGI app on the same uvicorn options, and drives both with wrk (one thread, pinned to one CPU,
the servers on the other) replaying requests signed like boto3's. Every chimeproxy figure is
read against a baseline run made right before it, so a noisy machine moves both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import make_url

from bench import seed as seeding
from bench.servers import (
    Pinning,
    Server,
    baseline_server,
    chimeproxy_server,
    run_wrk,
    send_raw,
)
from bench.signing import Call, Signer, unsigned_route, write_raw

ACCESS_KEY = "AKIDCHIMEPROXYBENCH1"
DEFAULT_OUT = Path(__file__).with_name("results") / "latest.json"
# Issue #17's targets, each on the large dataset (SQLite) as a ratio to the run's baseline.
TARGETS_TEXT = {
    "route_ratio": "POST /_chimeproxy/route (1M sessions) >= 0.2x baseline req/s",
    "get_ratio": "GetProxySession (1M sessions) >= 0.3x baseline req/s",
    "update_ratio": "UpdateProxySession (1M sessions) >= 0.08x baseline req/s",
    "list_ratio": "ListProxySessions, page of 100 (1M sessions) >= 0.04x baseline req/s",
    "create_ratio": "CreateProxySession (1M sessions) >= 0.03x baseline req/s",
    "errors": "no errors and no non-2xx answers in any row",
    "get_scaling": "GetProxySession at 1M vs at 10k sessions >= 0.8x",
    "get_p99": "GetProxySession p99 at 32 connections <= 3x baseline p99",
    "rss": "server peak RSS with 1M sessions <= 150 MB (143.1 MiB)",
}
RATIO_TARGETS = {"route": 0.2, "get": 0.3, "update": 0.08, "list": 0.04, "create": 0.03}
# The memory line is 150 MB; /proc reports KiB, so the figures are in MiB.
PEAK_RSS_LIMIT_MIB = 150e6 / 2**20


@dataclass(frozen=True)
class Scenario:
    """A measured operation: its name, and how to build its request file for a dataset."""

    key: str
    name: str
    build: Callable[[Signer, seeding.Seeded, int], Iterator[bytes] | Iterator[Call]]
    count: int  # distinct requests to pre-build (cycled by wrk)


def _get_calls(signer: Signer, data: seeding.Seeded, count: int) -> Iterator[Call]:
    base = f"/voice-connectors/{data.connector_id}/proxy-sessions/"
    for index in range(count):
        yield Call("GET", base + data.sample_ids[index % len(data.sample_ids)])


def _list_calls(signer: Signer, data: seeding.Seeded, count: int) -> Iterator[Call]:
    path = f"/voice-connectors/{data.connector_id}/proxy-sessions?max-results=100"
    for _ in range(count):
        yield Call("GET", path)


def _update_calls(signer: Signer, data: seeding.Seeded, count: int) -> Iterator[Call]:
    base = f"/voice-connectors/{data.connector_id}/proxy-sessions/"
    for index in range(count):
        session_id = data.open_ids[index % len(data.open_ids)]
        # Alternating expiries really change the row and its routes' expiry each time.
        body = {"Capabilities": ["Voice", "SMS"], "ExpiryMinutes": 60 + 30 * (index % 2)}
        yield Call("POST", base + session_id, body)


class _CreateCalls:
    """Creates with participant pairs never used before in this run (distinct per request)."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, signer: Signer, data: seeding.Seeded, count: int) -> Iterator[Call]:
        path = f"/voice-connectors/{data.connector_id}/proxy-sessions"
        start, self.next = self.next, self.next + count
        for index in range(start, start + count):
            pair = [seeding.participant(4, index), seeding.participant(5, index)]
            yield Call("POST", path, {"ParticipantPhoneNumbers": pair, "Capabilities": ["Voice"]})


class _ReturningCreateCalls:
    """Creates for pairs that had sessions before: the seeded regular pairs, each with about
    twenty numbers in `pair_history` (the selection prefers those), or where every session is
    Open (10k) the Open sessions' pairs, which then need a number other than their current
    one. A patient and a clinic, a buyer and a seller meet again: the sticky path, which
    distinct new pairs never take."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, signer: Signer, data: seeding.Seeded, count: int) -> Iterator[Call]:
        path = f"/voice-connectors/{data.connector_id}/proxy-sessions"
        pairs = data.regular_pairs or [
            (first, second) for first, second, _ in data.open_participants
        ]
        start, self.next = self.next, self.next + count
        for index in range(start, start + count):
            pair = list(pairs[index % len(pairs)])
            yield Call("POST", path, {"ParticipantPhoneNumbers": pair, "Capabilities": ["Voice"]})


def _route_requests(signer: Signer, data: seeding.Seeded, count: int) -> Iterator[bytes]:
    for index in range(count):
        first, _second, number = data.open_participants[index % len(data.open_participants)]
        yield unsigned_route(signer.host, first, number)


SCENARIOS = [
    Scenario("get", "GetProxySession", _get_calls, 20_000),
    Scenario("list", "ListProxySessions (page of 100)", _list_calls, 200),
    Scenario("update", "UpdateProxySession", _update_calls, 10_000),
    Scenario("route", "POST /_chimeproxy/route", _route_requests, 10_000),
    Scenario("create", "CreateProxySession", _CreateCalls(), 40_000),
    Scenario("returning", "CreateProxySession (returning pair)", _ReturningCreateCalls(), 40_000),
]


def _build(scenario: Scenario, signer: Signer, data: seeding.Seeded, count: int, path: Path) -> int:
    items = list(scenario.build(signer, data, count))
    if items and isinstance(items[0], Call):
        return signer.write(items, path)  # type: ignore[arg-type]
    return write_raw(items, path)  # type: ignore[arg-type]


def _first_request(path: Path) -> bytes:
    with path.open("rb") as handle:
        length = int(handle.readline())
        return handle.read(length)


class Bench:
    """One benchmark run: servers, datasets, measurements, and the report."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.pinning = Pinning.choose(not args.no_pin)
        self.secret = secrets.token_hex(20)
        self.credentials = workdir / "credentials.csv"
        self.credentials.write_text(
            f"access_key_id,secret_access_key,account_id\n{ACCESS_KEY},{self.secret},"
            f"{seeding.ACCOUNT}\n"
        )
        self.rows: list[dict[str, Any]] = []
        self.datasets: dict[str, dict[str, Any]] = {}
        self.memory: dict[str, dict[str, float]] = {}
        self.skipped: list[str] = []
        self.baseline = baseline_server(workdir, self.pinning)
        self.baseline_requests = workdir / "baseline.req"

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def wrk(self, host: str, requests: Path, duration: float) -> dict[str, Any]:
        return run_wrk(
            host,
            requests,
            self.workdir / "wrk.json",
            duration=duration,
            connections=self.args.connections,
            pinning=self.pinning,
        )

    def measure_baseline(self) -> dict[str, Any]:
        return self.wrk(self.baseline.host, self.baseline_requests, self.args.duration)

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.baseline.start()
        try:
            for label, sessions, postgres in self.dataset_plan():
                self.run_dataset(label, sessions, postgres)
        finally:
            self.baseline.stop()
        return self.report(time.monotonic() - started)

    def dataset_plan(self) -> list[tuple[str, int, bool]]:
        """(label, sessions, on PostgreSQL) of each dataset, in order."""
        sizes = [self.args.small] if self.args.quick else [self.args.small, self.args.large]
        plan = [(_label(n), n, False) for n in sizes if "sqlite" in self.args.databases]
        if self.args.postgres and "postgresql" in self.args.databases:
            plan.append((f"pg-{_label(sizes[-1])}", sizes[-1], True))
        return plan

    def run_dataset(self, label: str, sessions: int, postgres: bool = False) -> None:
        directory = self.workdir / label
        directory.mkdir()
        with postgres_database(self.args.postgres) if postgres else _no_database() as url:
            self.log(
                f"seeding {sessions:,} sessions, {self.args.pool:,} numbers (bulk, into the "
                f"store{', PostgreSQL' if url else ''})"
            )
            data = seeding.seed(
                str(directory / "chimeproxy.db"),
                sessions=sessions,
                pool=self.args.pool,
                open_sessions=min(self.args.open_sessions, sessions),
                url=url,
            )
            if seeding.check_invariant(data.database_path, url):
                raise RuntimeError("seeded data breaks the routing invariant")
            if self.args.allocation_index and not url:
                seeding.add_allocation_index(data.database_path)
            self.datasets[label] = {
                "sessions": sessions,
                "database": "postgresql" if url else "sqlite",
                "open_sessions": data.open_sessions,
                "pool_numbers": len(data.pool),
                "seed_seconds": round(data.seconds, 1),
            }
            if not url:
                size = Path(data.database_path).stat().st_size
                self.datasets[label]["database_mib"] = round(size / 2**20, 1)
            self.log(f"seeded in {data.seconds:.1f}s; starting chimeproxy")
            server = chimeproxy_server(
                directory,
                url or f"sqlite:///{data.database_path}",
                self.credentials,
                self.pinning,
                self.args.server_log_level,
                self.args.variant,
                workers=self.args.workers,
                http_server=self.args.http_server,
            ).start()
            scenarios = self.args.pg_scenarios if url else self.args.scenarios
            try:
                signer = Signer(server.host, ACCESS_KEY, self.secret, seeding.REGION)
                for scenario in SCENARIOS:
                    if scenario.key in scenarios:
                        self.run_scenario(scenario, server, signer, data, label)
                self.memory[label] = server.memory()
            finally:
                server.stop()

    def run_scenario(
        self, scenario: Scenario, server: Server, signer: Signer, data: seeding.Seeded, label: str
    ) -> None:
        requests = self.workdir / f"{scenario.key}.req"
        count = scenario.count if not self.args.quick else min(scenario.count, 5_000)
        _build(scenario, signer, data, min(count, 500), requests)
        status, body = send_raw(server.host, _first_request(requests))
        if scenario.key == "route" and status == 404:
            self.log("POST /_chimeproxy/route is not in this server: skipped")
            self.skipped.append(f"{scenario.name}: not implemented by this server")
            return
        if not 200 <= status < 300:
            raise RuntimeError(f"{scenario.name} answered {status}: {body[:500]!r}")
        self.log(f"{label} {scenario.name}: warm-up {self.args.warmup}s")
        _build(scenario, signer, data, count, requests)
        self.wrk(server.host, requests, self.args.warmup)
        for attempt in range(self.args.repeat):
            # Fresh signatures for every run: they are valid for 5 minutes only. The baseline
            # gets the very bytes of Get requests, so both servers parse the same headers.
            baseline_signer = Signer(self.baseline.host, ACCESS_KEY, self.secret, seeding.REGION)
            baseline_signer.write(_get_calls(baseline_signer, data, 1000), self.baseline_requests)
            _build(scenario, signer, data, count, requests)
            base_cpu = self.baseline.cpu_seconds()
            base = self.measure_baseline()
            base_cpu = self.baseline.cpu_seconds() - base_cpu
            cpu = server.cpu_seconds()
            result = self.wrk(server.host, requests, self.args.duration)
            cpu = server.cpu_seconds() - cpu
            row = {
                "key": scenario.key,
                "operation": scenario.name,
                "dataset": label,
                "attempt": attempt,
                **result,
                "baseline_rps": base["rps"],
                "baseline_p50_ms": base["p50_ms"],
                "baseline_p99_ms": base["p99_ms"],
                "ratio": round(result["rps"] / base["rps"], 3),
                "p99_ratio": round(result["p99_ms"] / max(base["p99_ms"], 1e-3), 2),
                "cpu_us": _per_request_us(cpu, result["requests"]),
                "baseline_cpu_us": _per_request_us(base_cpu, base["requests"]),
            }
            self.rows.append(row)
            self.log(
                f"{label} {scenario.name}: {result['rps']:.0f} req/s "
                f"(baseline {base['rps']:.0f}, x{row['ratio']:.3f}), p99 {result['p99_ms']:.2f} ms"
                + (f", {result['errors']} errors" if result["errors"] else "")
            )
        if self.args.profile:
            self.profile(scenario, server, signer, data, label, requests, count)

    def profile(
        self,
        scenario: Scenario,
        server: Server,
        signer: Signer,
        data: seeding.Seeded,
        label: str,
        requests: Path,
        count: int,
    ) -> None:
        """An extra, unreported run under py-spy (sampling slows the server down)."""
        self.args.profile.mkdir(parents=True, exist_ok=True)
        output = self.args.profile / f"{label}-{scenario.key}.txt"
        _build(scenario, signer, data, count, requests)
        command = [
            str(Path(sys.executable).with_name("py-spy")),
            "record", "--pid", str(server.pid), "--rate", "250", "--format", "raw",
            "--nonblocking", "--duration", str(round(self.args.duration)),
            "--output", str(output),
        ]  # fmt: skip
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wrk(server.host, requests, self.args.duration)
        spy.wait()
        self.log(f"profile: {output}")

    def report(self, seconds: float) -> dict[str, Any]:
        baseline, rows = summarize(self.rows)
        labels = (_label(self.args.large), _label(self.args.small))
        return {
            "meta": {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "mode": "quick" if self.args.quick else "full",
                "seconds": round(seconds, 1),
                "python": platform.python_version(),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "cpu": cpu_description(),
                "pinning": {"wrk_cpu": self.pinning.client, "server_cpu": self.pinning.server},
                "connections": self.args.connections,
                "duration_s": self.args.duration,
                "repeat": self.args.repeat,
                "server_log_level": self.args.server_log_level,
                "allocation_index_experiment": self.args.allocation_index,
                "variant": self.args.variant or "current",
                "workers": self.args.workers,
                "http_server": self.args.http_server,
                "seeding": "bulk executemany straight into the store (bench/seed.py)",
                "wrk": _wrk_version(),
            },
            "datasets": self.datasets,
            "baseline": baseline,
            "rows": rows,
            "all_runs": self.rows,
            "memory": self.memory,
            "targets": targets(rows, self.memory, *labels),
            "labels": {"large": labels[0], "small": labels[1]},
            "skipped": self.skipped,
        }


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A PostgreSQL database of its own for one dataset, created empty on the server of
    `admin_url` (a database URL of a role that may create databases) and dropped afterwards."""
    import psycopg

    name = f"chimeproxy_bench_{secrets.token_hex(4)}"
    admin = seeding.libpq_url(admin_url)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield str(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def _no_database() -> Iterator[None]:
    yield None


def summarize(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The reference baseline and one row per (operation, dataset), best of N.

    Noise on a shared machine only ever slows a run down, and it slows the baseline most (a
    fast server makes wrk the bottleneck, and wrk shares the machine too), so the fastest
    attempt of each is the truest; every row's ratios are to the fastest baseline attempt of
    the run. `adjacent_ratio` keeps the ratio to the baseline run made right before."""
    if not runs:
        return {"rps": None, "p50_ms": None, "p99_ms": None, "runs": 0}, []
    fastest = max(runs, key=lambda r: r["baseline_rps"])
    baseline = {
        "rps": fastest["baseline_rps"],
        "p50_ms": fastest["baseline_p50_ms"],
        "p99_ms": fastest["baseline_p99_ms"],
        "rps_slowest": min(r["baseline_rps"] for r in runs),
        "cpu_us": fastest.get("baseline_cpu_us"),
        "runs": len(runs),
    }
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run["key"], run["dataset"]), []).append(run)
    rows = []
    for attempts in grouped.values():
        best = max(attempts, key=lambda r: r["rps"])
        rows.append(
            {
                **best,
                "attempts": len(attempts),
                "adjacent_ratio": best["ratio"],
                "ratio": round(best["rps"] / baseline["rps"], 3),
                "p99_ratio": round(best["p99_ms"] / max(baseline["p99_ms"], 1e-3), 2),
            }
        )
    return baseline, rows


def targets(
    rows: list[dict[str, Any]], memory: dict[str, dict[str, float]], large: str, small: str
) -> dict[str, dict[str, Any]]:
    """Each target of the issue with its value, met (True/False) or None when not measured."""
    by = {(r["key"], r["dataset"]): r for r in rows}
    results: dict[str, dict[str, Any]] = {}

    def put(key: str, value: float | None, limit: float, at_most: bool = False) -> None:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        results[key] = {"target": TARGETS_TEXT[key], "value": value, "met": met}

    for key, limit in RATIO_TARGETS.items():
        row = by.get((key, large))
        put(f"{key}_ratio", row["ratio"] if row else None, limit)
    errors = sum(r["errors"] for r in rows) if rows else None
    put("errors", errors, 0, at_most=True)
    get_large = by.get(("get", large))
    get_small = by.get(("get", small))
    scaling = round(get_large["rps"] / get_small["rps"], 3) if get_large and get_small else None
    put("get_scaling", scaling, 0.8)
    get_any = get_large or get_small
    put("get_p99", get_any["p99_ratio"] if get_any else None, 3.0, at_most=True)
    peak = memory.get(large)
    put("rss", round(peak["peak_rss_mib"], 1) if peak else None, PEAK_RSS_LIMIT_MIB, at_most=True)
    return results


def _per_request_us(cpu_seconds: float, requests: int) -> float | None:
    """Server CPU (user + system) per answered request, in µs."""
    return round(cpu_seconds * 1e6 / requests, 1) if requests else None


def _label(sessions: int) -> str:
    if sessions >= 1_000_000 and sessions % 1_000_000 == 0:
        return f"{sessions // 1_000_000}M"
    if sessions >= 1000 and sessions % 1000 == 0:
        return f"{sessions // 1000}k"
    return str(sessions)


_CACHE_KIND = {"Data": "d", "Instruction": "i"}  # a unified cache gets no letter


def cpu_description(
    cpuinfo: Path = Path("/proc/cpuinfo"),
    caches: Path = Path("/sys/devices/system/cpu/cpu0/cache"),
) -> str:
    """The CPU's model and its caches' sizes, for the results' `meta`: the ratios depend on
    the CPU (the same code's Get at 1M measured 0.30x on one machine and 0.37x on another,
    docs/performance.md, seventeenth pass)."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and value.strip():
                model = value.strip()
                break
    sizes = []
    with contextlib.suppress(OSError):
        for index in sorted(caches.glob("index*")):
            kind = (index / "type").read_text().strip()
            level = (index / "level").read_text().strip()
            size = (index / "size").read_text().strip()
            sizes.append(f"L{level}{_CACHE_KIND.get(kind, '')} {size}")
    return f"{model} ({', '.join(sizes)})" if sizes else model


def _wrk_version() -> str:
    finished = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (finished.stdout or finished.stderr).splitlines()[0].strip()


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def format_table(report: dict[str, Any]) -> str:
    """The human-readable table: every row with its ratio to the baseline of the same run."""
    base = report["baseline"]
    lines = [
        f"{'operation':<34} {'sessions':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'x base':>7} {'p99 x':>6} {'errors':>6} {'CPU µs':>7}",
        "-" * 102,
    ]
    if base["rps"] is not None:
        lines.append(
            f"{'baseline (bare ASGI app)':<34} {'-':>8} {base['rps']:>8.0f} "
            f"{base['p50_ms']:>8.2f} {base['p99_ms']:>8.2f} {1:>7.3f} {1:>6.2f} {0:>6} "
            f"{_shown(base.get('cpu_us')):>7}"
        )
    for row in report["rows"]:
        lines.append(
            f"{row['operation']:<34} {row['dataset']:>8} {row['rps']:>8.0f} "
            f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['ratio']:>7.3f} "
            f"{row['p99_ratio']:>6.2f} {row['errors']:>6} {_shown(row.get('cpu_us')):>7}"
        )
    for label, memory in report["memory"].items():
        lines.append(
            f"server peak RSS, {label} sessions: {memory['peak_rss_mib']:.1f} MiB "
            f"(now {memory['rss_mib']:.1f})"
        )
    for skipped in report["skipped"]:
        lines.append(f"skipped: {skipped}")
    lines.append("")
    lines.append("targets:")
    for target in report["targets"].values():
        mark = {True: "MET ", False: "MISS", None: "n/a "}[target["met"]]
        value = "-" if target["value"] is None else target["value"]
        lines.append(f"  [{mark}] {target['target']}: {value}")
    lines.append(
        "best of each operation's attempts; x base: its req/s over the fastest baseline attempt "
        "of the run; p99 x: its p99 over that attempt's p99; CPU µs: the server's CPU time "
        "(user + system) per request in that attempt, the least of the figures disturbed by other "
        "load."
    )
    return "\n".join(lines)


def refuse_unknown_scenarios(parser: argparse.ArgumentParser, keys: set[str]) -> None:
    """An argument error naming the keys that are no scenario's."""
    unknown = keys - {s.key for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small dataset, short runs (< 2 min)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--large", type=int, default=1_000_000, help="sessions, large dataset")
    parser.add_argument("--small", type=int, default=10_000, help="sessions, small dataset")
    parser.add_argument("--pool", type=int, default=10_000, help="proxy numbers in the pool")
    parser.add_argument("--open-sessions", type=int, default=10_000, help="of them Open")
    parser.add_argument("--duration", type=float, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per operation")
    parser.add_argument("--repeat", type=int, default=1, help="runs per operation (median)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--scenarios",
        default=",".join(s.key for s in SCENARIOS),
        help="comma-separated subset of " + ",".join(s.key for s in SCENARIOS),
    )
    parser.add_argument(
        "--server-log-level", default="info", help="chimeproxy --log-level (default: its own)"
    )
    parser.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="also seed and measure PostgreSQL, in a database of its own created through this "
        "URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards",
    )
    parser.add_argument(
        "--pg-scenarios",
        default="get,create,route",
        help="the operations measured on PostgreSQL (default: get,create,route)",
    )
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql",
        help="which of the datasets to run: sqlite, postgresql (with --postgres), or both",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="chimeproxy serve --workers (more than 1: the servers are not pinned to a CPU)",
    )
    parser.add_argument(
        "--http-server",
        choices=["uvicorn", "granian"],
        default="uvicorn",
        help="the HTTP server chimeproxy runs under (granian: measured only, see "
        "docs/performance.md; the baseline stays on uvicorn)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--variant",
        choices=["before", "no-gc-freeze"],
        help="run the server with this benchmark's optimizations off (bench/variants.py)",
    )
    parser.add_argument(
        "--allocation-index",
        action="store_true",
        help="experiment: add the index docs/performance.md proposes for CreateProxySession "
        "to the seeded database (not part of the shipped schema)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--report", type=Path, help="only re-summarize and print an earlier results file"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="also record each operation with py-spy (an extra run) into this directory",
    )
    args = parser.parse_args(argv)
    args.scenarios = set(args.scenarios.split(","))
    args.pg_scenarios = set(args.pg_scenarios.split(","))
    args.databases = set(args.databases.split(","))
    refuse_unknown_scenarios(parser, args.scenarios | args.pg_scenarios)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    return args


def rerender(path: Path) -> int:
    """Summarize a results file's attempts again (as this version does) and print the table."""
    report = orjson.loads(path.read_bytes())
    labels = report.get("labels") or {"large": "1M", "small": "10k"}
    report["baseline"], report["rows"] = summarize(report["all_runs"])
    report["targets"] = targets(report["rows"], report["memory"], labels["large"], labels["small"])
    report["labels"] = labels
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print(format_table(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        return rerender(args.report)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="chimeproxy-bench-"))
    try:
        report = Bench(args, workdir).run()
    finally:
        if args.keep:
            print(f"bench: kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print(format_table(report))
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
