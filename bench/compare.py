"""Live comparison of chimeproxy source trees, interleaved: the figure a change is kept on when
its effect is smaller than what the machine's load moves between two runs minutes apart.

    git worktree add /tmp/before <commit>
    .venv/bin/python -m bench.compare --scenario get --rounds 8 before=/tmp/before/src after=src

Each variant is a directory that holds a `chimeproxy` package (a worktree's `src`). One dataset
is seeded (with this tree's migrations: a variant whose migrations differ is refused) and copied for
every run, so each starts from the same rows. Each round runs every variant once, in turns
that alternate from round to round (ABBA), each on a fresh server in strict SigV4 mode, pinned
as `python -m bench` pins it: a short warm-up, then one wrk run with 32 connections. It prints
each run and, per variant, the median and least CPU time per request (the figure other load
disturbs least), req/s and p99, each median also as a ratio to the first variant's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import seed as seeding
from bench.run import ACCESS_KEY, SCENARIOS, Bench, _build, _per_request_us
from bench.servers import REPO, chimeproxy_server
from bench.signing import Signer


def _variant(text: str) -> tuple[str, Path]:
    name, separator, source = text.partition("=")
    package = Path(source) / "chimeproxy"
    if not separator or not name or not (package / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=DIR, where DIR holds the chimeproxy package (a tree's src)"
        )
    return name, Path(source).resolve()


def migrations(source: Path) -> dict[str, str]:
    """The migration files of the tree at `source` (a directory holding the `chimeproxy`
    package), each file name with a digest of its text."""
    versions = source / "chimeproxy" / "store" / "migrations" / "versions"
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(versions.glob("*.py"))
        if path.name != "__init__.py"
    }


def schema_difference(source: Path, reference: Path) -> str | None:
    """What makes the schema of the tree at `source` differ from `reference`'s, in words, or
    None. The dataset is seeded once, with this tree's migrations, and copied for every
    variant: a variant of another schema would run on tables it does not expect, and fail or
    measure something else."""
    own, expected = migrations(source), migrations(reference)
    if own == expected:
        return None
    missing = sorted(set(expected) - set(own))
    extra = sorted(set(own) - set(expected))
    changed = sorted(name for name in set(own) & set(expected) if own[name] != expected[name])
    parts = [
        f"{label} {', '.join(names)}"
        for label, names in (("lacks", missing), ("adds", extra), ("changes", changed))
        if names
    ]
    return "; ".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("variants", nargs="+", type=_variant, metavar="NAME=DIR")
    parser.add_argument("--scenario", default="get", choices=[s.key for s in SCENARIOS])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--pool", type=int, default=10_000, help="proxy numbers in the pool")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server-log-level", default="info")
    parser.add_argument("--out", type=Path, help="JSON file for every run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.variants]
    if len(set(names)) != len(names):
        parser.error("each variant needs a name of its own")
    for name, source in args.variants:
        difference = schema_difference(source, REPO / "src")
        if difference is not None:
            parser.error(
                f"{name}: its migrations differ from this tree's ({difference}); the dataset "
                "is seeded with this tree's schema, so every variant must share it"
            )
    return args


def summarize(runs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Per variant, in the order given: medians of CPU µs, req/s and p99 over its runs, the
    least CPU µs, and each median as a ratio to the first variant's."""
    rows = []
    for name in names:
        own = [run for run in runs if run["variant"] == name]
        rows.append(
            {
                "variant": name,
                "runs": len(own),
                "cpu_us": statistics.median(run["cpu_us"] for run in own),
                "least_cpu_us": min(run["cpu_us"] for run in own),
                "rps": statistics.median(run["rps"] for run in own),
                "p99_ms": statistics.median(run["p99_ms"] for run in own),
                "errors": sum(run["errors"] for run in own),
            }
        )
    first = rows[0]
    for row in rows:
        for key in ("cpu_us", "rps", "p99_ms"):
            row[f"{key}_ratio"] = round(row[key] / first[key], 3) if first[key] else None
    return rows


class Comparison(Bench):
    """The runs of one comparison: a seeded database copied for each, one server per run
    (credentials, pinning and wrk as `python -m bench` has them)."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        super().__init__(args, workdir)
        self.scenario = next(s for s in SCENARIOS if s.key == args.scenario)
        self.seeded = workdir / "seeded.db"
        self.data = seeding.seed(
            str(self.seeded),
            sessions=args.sessions,
            pool=args.pool,
            open_sessions=min(10_000, args.sessions),
        )

    def run(self, name: str, source: Path, round_index: int) -> dict[str, Any]:
        """One variant's run, on a fresh copy of the seeded database."""
        database = self.workdir / "run.db"
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.seeded, database)
        python_path = os.pathsep.join([str(source), str(REPO)])
        server = chimeproxy_server(
            self.workdir,
            f"sqlite:///{database}",
            self.credentials,
            self.pinning,
            self.args.server_log_level,
            env={**os.environ, "PYTHONPATH": python_path},
        ).start()
        try:
            signer = Signer(server.host, ACCESS_KEY, self.secret, seeding.REGION)
            requests = self.workdir / f"{self.scenario.key}.req"
            _build(self.scenario, signer, self.data, min(self.scenario.count, 5_000), requests)
            self.wrk(server.host, requests, self.args.warmup)
            before = server.cpu_seconds()
            result = self.wrk(server.host, requests, self.args.duration)
            cpu = server.cpu_seconds() - before
        finally:
            server.stop()
        return {
            "variant": name,
            "round": round_index,
            **result,
            "cpu_us": _per_request_us(cpu, result["requests"]),
        }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="chimeproxy-compare-"))
    runs: list[dict[str, Any]] = []
    try:
        comparison = Comparison(args, workdir)
        for round_index in range(args.rounds):
            turn = args.variants if round_index % 2 == 0 else args.variants[::-1]
            for name, source in turn:
                run = comparison.run(name, source, round_index)
                runs.append(run)
                print(
                    f"round {round_index} {name}: {run['rps']:.0f} req/s, "
                    f"{run['cpu_us']:.1f} µs CPU a request, p99 {run['p99_ms']:.2f} ms"
                    + (f", {run['errors']} errors" if run["errors"] else ""),
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = summarize(runs, [name for name, _ in args.variants])
    print(
        f"\n{comparison.scenario.name}, {args.sessions:,} sessions, {args.rounds} rounds, medians:"
    )
    for row in rows:
        print(
            f"  {row['variant']}: {row['cpu_us']:.1f} µs CPU ({row['cpu_us_ratio']}x; least "
            f"{row['least_cpu_us']:.1f}), {row['rps']:.0f} req/s ({row['rps_ratio']}x), "
            f"p99 {row['p99_ms']:.2f} ms ({row['p99_ms_ratio']}x), {row['errors']} errors"
        )
    if args.out:
        args.out.write_text(json.dumps({"summary": rows, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
