"""Instructions per request, counted by valgrind's callgrind: chimeproxy against the baseline,
both live (uvicorn, a real socket), in the same run.

    .venv/bin/python -m bench.instructions [--scenarios get,list,route] [--sessions 10000]

On a shared machine req/s and even CPU time move with whatever else runs; an instruction count
does not. Each server runs under `valgrind --tool=callgrind` with counting off; a warm-up goes
through, counting is switched on (`callgrind_control -i on`) for a fixed number of requests sent
one after another on one keep-alive connection, then switched off and dumped. The warm-up is
the measured requests themselves (new creates for CreateProxySession), as wrk cycles through its
file, so caches hold what a steady load keeps. The figure is
the server process's user-space instructions (every thread, the kernel's work not counted)
divided by the requests, and its ratio is the baseline's count over chimeproxy's: how many
requests chimeproxy answers with what the baseline spends on one, which is what the bench's
req/s ratio would be if both ran at the same instructions per cycle (they do not: the bigger
program stalls more; docs/performance.md). Requests are sequential, so writes do not share
commits as they do under wrk's 32 connections. About a minute for three scenarios at 10k
sessions; servers under callgrind run some 50 times slower, so counts stay small.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import seed as seeding
from bench.run import ACCESS_KEY, SCENARIOS, Scenario, refuse_unknown_scenarios
from bench.servers import Pinning, Server, baseline_server, chimeproxy_server
from bench.signing import Call, Signer

DEFAULT_SCENARIOS = "get,list,route,update,create"
# Creates are of new pairs each time (a repeated one would take another path): their warm-up
# is other creates.
FRESH_EACH_TIME = frozenset({"create", "returning"})
# Starting Python and importing botocore's model under callgrind takes tens of seconds.
START_TIMEOUT_S = 300.0
_TOTALS = re.compile(r"^(?:totals|summary):\s+(\d+)", re.MULTILINE)
_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def callgrind_total(text: str) -> int:
    """The instruction count of one callgrind dump (its `totals:` or `summary:` line)."""
    found = [int(value) for value in _TOTALS.findall(text)]
    if not found:
        raise ValueError("no totals or summary line in the callgrind dump")
    return max(found)


def under_callgrind(server: Server, out_file: Path) -> Server:
    """`server` started under callgrind with counting off until switched on."""
    server.command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_file}",
        *server.command,
    ]
    return server


class Counter:
    """Counts a live server's instructions over a batch of requests."""

    def __init__(self, server: Server, out_file: Path) -> None:
        self.server = server
        self.out_file = out_file
        self.dumps = 0

    def _control(self, *args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(self.server.pid)],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def count(self, warmup: list[bytes], measured: list[bytes]) -> int:
        """Instructions per request of `measured`, after `warmup` went through uncounted."""
        send_all(self.server.port, warmup)
        self._control("-i", "on")
        send_all(self.server.port, measured)
        self._control("-i", "off")
        self._control("-d")
        self.dumps += 1
        dump = Path(f"{self.out_file}.{self.dumps}")
        deadline = time.monotonic() + 60
        while not dump.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return round(callgrind_total(dump.read_text()) / len(measured))


def send_all(port: int, requests: list[bytes]) -> None:
    """Each request in turn on one keep-alive connection, each answer read whole; a non-2xx
    answer is an error (a count of failures would measure the wrong path)."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        for raw in requests:
            sock.sendall(raw)
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the server closed the connection")
                received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if not 200 <= status < 300:
                raise RuntimeError(f"answer {status} to {raw.split(b' ', 2)[:2]}: {body[:300]!r}")
            length = _CONTENT_LENGTH.search(head)
            remaining = int(length.group(1)) - len(body) if length else 0
            while remaining > 0:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the server closed the connection mid-answer")
                remaining -= len(chunk)


def _requests(scenario: Scenario, signer: Signer, data: seeding.Seeded, count: int) -> list[bytes]:
    items = list(scenario.build(signer, data, count))
    return [signer.raw(item) if isinstance(item, Call) else item for item in items]


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    secret = secrets.token_hex(20)
    credentials = workdir / "credentials.csv"
    credentials.write_text(
        f"access_key_id,secret_access_key,account_id\n{ACCESS_KEY},{secret},{seeding.ACCOUNT}\n"
    )
    credentials.chmod(0o600)
    data = seeding.seed(
        str(workdir / "chimeproxy.db"),
        sessions=args.sessions,
        pool=args.pool,
        open_sessions=min(args.open_sessions, args.sessions),
    )
    unpinned = Pinning(None, None)
    total = args.warmup + args.requests  # for the baseline and the creates
    rows: dict[str, int] = {}
    dumps: dict[str, str] = {"baseline": "baseline.callgrind.1"}
    baseline_count = 0
    for name in ("baseline", "chimeproxy"):
        out_file = workdir / f"{name}.callgrind"
        if name == "baseline":
            server = baseline_server(workdir, unpinned)
        else:
            database = f"sqlite:///{data.database_path}"
            server = chimeproxy_server(workdir, database, credentials, unpinned, "info")
        under_callgrind(server, out_file).start(timeout=START_TIMEOUT_S)
        counter = Counter(server, out_file)
        try:
            signer = Signer(server.host, ACCESS_KEY, secret, seeding.REGION)
            if name == "baseline":
                # The very bytes of the Get requests, as in `python -m bench`.
                get = next(s for s in SCENARIOS if s.key == "get")
                raws = _requests(get, signer, data, total)
                baseline_count = counter.count(raws[: args.warmup], raws[args.warmup :])
                print(f"baseline: {baseline_count:,} instructions a request", file=sys.stderr)
                continue
            for scenario in SCENARIOS:
                if scenario.key not in args.scenarios:
                    continue
                if scenario.key in FRESH_EACH_TIME:
                    raws = _requests(scenario, signer, data, total)
                    warmup, measured = raws[: args.warmup], raws[args.warmup :]
                else:
                    # The measured requests themselves go through first, as wrk cycles through
                    # its file: caches (parsed numbers, pages) hold what a steady load keeps.
                    warmup = measured = _requests(scenario, signer, data, args.requests)
                rows[scenario.key] = counter.count(warmup, measured)
                dumps[scenario.key] = f"{out_file.name}.{counter.dumps}"
                print(f"{scenario.name}: {rows[scenario.key]:,} a request", file=sys.stderr)
        finally:
            server.stop()
    return {
        "sessions": args.sessions,
        "requests": args.requests,
        "baseline": baseline_count,
        "operations": {
            key: {
                "instructions": count,
                "x_baseline": round(baseline_count / count, 3),
                "dump": dumps[key],
            }
            for key, count in rows.items()
        },
    }


def format_table(result: dict[str, Any]) -> str:
    names = {scenario.key: scenario.name for scenario in SCENARIOS}
    lines = [
        f"{'operation':<38}{'instructions/request':>22}{'x base':>9}",
        "-" * 69,
        f"{'baseline (bare ASGI app)':<38}{result['baseline']:>22,}{1.0:>9.3f}",
    ]
    for key, row in result["operations"].items():
        lines.append(f"{names[key]:<38}{row['instructions']:>22,}{row['x_baseline']:>9.3f}")
    lines.append(
        f"{result['sessions']:,} sessions; {result['requests']} requests counted each, sent one "
        "at a time; x base: the baseline's count over the operation's"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--open-sessions", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200, help="counted, per operation")
    parser.add_argument(
        "--warmup", type=int, default=50, help="creates (and baseline) sent uncounted first"
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    parser.add_argument(
        "--keep", type=Path, help="copy the callgrind dumps here (for callgrind_annotate)"
    )
    args = parser.parse_args(argv)
    args.scenarios = set(args.scenarios.split(","))
    refuse_unknown_scenarios(parser, args.scenarios)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"bench.instructions needs {' and '.join(missing)} (Debian: valgrind)")
        return 2
    with tempfile.TemporaryDirectory(prefix="chimeproxy-instructions-") as directory:
        result = measure(args, Path(directory))
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in Path(directory).glob("*.callgrind.*"):
                shutil.copy(dump, args.keep / dump.name)
    print(format_table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
