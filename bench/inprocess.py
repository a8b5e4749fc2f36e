"""Time one operation through the ASGI app in-process, without HTTP or wrk: the app's own cost
per request, for quick before/after checks and cProfile. Not a substitute for `python -m bench`
(no uvicorn, no network, no concurrency).

    .venv/bin/python -m bench.inprocess get --sessions 10000 [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import seed as seeding
from bench.run import ACCESS_KEY, SCENARIOS
from bench.signing import Signer
from chimeproxy.app import ChimeProxyApp
from chimeproxy.settings import Settings


def _scope(raw: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ")
    path, _, query = target.partition(b"?")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method.decode(),
        "path": path.decode(),
        "raw_path": path,
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8089),
    }
    return scope, body


async def _drive(app: ChimeProxyApp, raws: list[bytes], count: int) -> tuple[float, int]:
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    prepared = [_scope(raw) for raw in raws]
    started = time.perf_counter()
    for index in range(count):
        scope, body = prepared[index % len(prepared)]

        async def receive(body: bytes = body) -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    return elapsed, sum(1 for s in statuses if not 200 <= s < 300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=[s.key for s in SCENARIOS])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the fastest counts")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--allocation-index", action="store_true", help="see bench/run.py")
    args = parser.parse_args(argv)
    scenario = next(s for s in SCENARIOS if s.key == args.scenario)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        data = seeding.seed(
            str(path / "db.sqlite"), sessions=args.sessions, pool=10_000, open_sessions=5_000
        )
        if args.allocation_index:
            seeding.add_allocation_index(data.database_path)
        secret = secrets.token_hex(20)
        credentials = path / "credentials.csv"
        credentials.write_text(
            f"access_key_id,secret_access_key,account_id\n{ACCESS_KEY},{secret},{seeding.ACCOUNT}\n"
        )
        from chimeproxy import logs

        logs.configure(args.log_level)
        settings = Settings(
            database=f"sqlite:///{data.database_path}",
            auth="strict",
            credentials=str(credentials),
            log_level=args.log_level,
            sweep_interval_seconds=3600,
        )
        app = ChimeProxyApp(settings)
        signer = Signer("127.0.0.1:8089", ACCESS_KEY, secret, seeding.REGION)
        items = list(scenario.build(signer, data, min(args.count, 5_000)))
        raws = [signer.raw(item) if not isinstance(item, bytes) else item for item in items]

        async def run() -> tuple[float, int]:
            await app.startup()
            try:
                await _drive(app, raws, min(500, args.count))  # warm-up
                if args.profile:
                    profiler = cProfile.Profile()
                    profiler.enable()
                    result = await _drive(app, raws, args.count)
                    profiler.disable()
                    stats = pstats.Stats(profiler, stream=sys.stderr)
                    stats.sort_stats("tottime").print_stats(30)
                    return result
                # The best of a few runs: the machine is shared, and noise only ever adds time.
                runs = [await _drive(app, raws, args.count) for _ in range(args.repeat)]
                return min(runs)
            finally:
                await app.shutdown()

        elapsed, failures = asyncio.run(run())
    print(
        f"{scenario.name}: {elapsed / args.count * 1e6:.1f} us/request in-process "
        f"({args.count} requests, {failures} not 2xx)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
