"""Reads that take long on a big database (the metrics' whole-table counts, a console page) run
in a thread even on SQLite, whose API work runs inline on the event loop: while one of them is
under way, other requests are still answered. At 300,000 sessions a scrape took 200 ms, during
which every request waited (docs/performance.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chimeproxy.app import ChimeProxyApp
from chimeproxy.console import pages
from chimeproxy.settings import Settings
from chimeproxy.store import stats
from tests.conftest import in_process_settings

SLOW_S = 0.6  # how long the slowed read blocks its thread


def _slowed(real: Callable[..., Any]) -> Callable[..., Any]:
    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(SLOW_S)  # blocks whichever thread runs it, as a long query does
        return real(*args, **kwargs)

    return slow


async def _get(app: ChimeProxyApp, path: str) -> int:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8089")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8089),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A server's settings, with the metrics' counts and the console's overview slowed down."""
    monkeypatch.setattr(stats, "database_snapshot", _slowed(stats.database_snapshot))
    # Before the app exists: the console's page table takes the function when it is built.
    monkeypatch.setattr(pages, "overview", _slowed(pages.overview))
    return in_process_settings(tmp_path)


@pytest.mark.parametrize("slow_path", ["/_chimeproxy/metrics", "/console/"])
def test_other_requests_are_answered_while_a_long_read_runs(
    settings: Settings, slow_path: str
) -> None:
    async def main() -> None:
        app = ChimeProxyApp(settings, announce=False)
        await app.startup()
        try:
            started = time.monotonic()
            slow = asyncio.create_task(_get(app, slow_path))
            await asyncio.sleep(0.05)  # the slow read is under way
            assert await asyncio.wait_for(_get(app, "/_chimeproxy/health"), SLOW_S / 2) == 200
            assert not slow.done()
            assert await slow == 200
            assert time.monotonic() - started >= SLOW_S
        finally:
            await app.shutdown()

    asyncio.run(main())
