"""Under load, a request's phases (its caller checked, its work done, its answer sent) run for
every request ready for them before the next phase starts (app.ChimeProxyApp.handle): here
through uvicorn with chimeproxy's own protocol class, on real sockets, with requests that reach
the server in one turn of its event loop."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from chimeproxy.app import ChimeProxyApp
from chimeproxy.protocol.endpoints import Endpoint
from tests.conftest import in_process_settings
from tests.integration.faults import in_process_server, read_answer

CONCURRENT = 4
LISTING = "/voice-connectors"
HEALTH = b"GET /_chimeproxy/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _request(index: int) -> bytes:
    return f"GET {LISTING}?max-results={index} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def _instrumented(
    app: ChimeProxyApp, phases: list[str], blocking: threading.Event, release: threading.Event
) -> None:
    """Record each phase as it starts; the first request's check blocks the event loop until
    `release`, so that the requests sent meanwhile are all read in the loop's next turn."""
    check = app.access.check

    def checked(request: Any, access: Any) -> Any:
        if request.raw_path != LISTING:
            return check(request, access)
        phases.append("check")
        if not blocking.is_set():
            blocking.set()
            release.wait(10)
        return check(request, access)

    app.access.check = checked  # type: ignore[method-assign]
    listing = app.operations["ListVoiceConnectors"]

    async def work(request: Any, labels: dict[str, str]) -> Any:
        phases.append("work")
        return await listing.handler(request, labels)

    app.operations["ListVoiceConnectors"] = Endpoint(listing.name, listing.access, work)
    observe = app.metrics.observe

    def answered(operation: str, *args: Any) -> None:
        if operation == "ListVoiceConnectors":
            phases.append("answer")
        observe(operation, *args)

    app.metrics.observe = answered  # type: ignore[method-assign]


def test_requests_read_in_one_turn_take_each_phase_together(tmp_path: Path) -> None:
    settings = in_process_settings(tmp_path)
    app = ChimeProxyApp(settings, announce=False)
    phases: list[str] = []
    blocking, release = threading.Event(), threading.Event()
    _instrumented(app, phases, blocking, release)
    socks: list[socket.socket] = []
    with in_process_server(app) as port:
        try:
            # Connections in use before the first listing: the event loop accepts one
            # connection a turn, and only their requests must be left to read while it is held.
            for _ in range(1 + CONCURRENT):
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            for sock in socks:
                sock.sendall(HEALTH)
                assert read_answer(sock).startswith(b"HTTP/1.1 200")
            first, *others = socks
            first.sendall(_request(99))
            assert blocking.wait(10), "the first request was not checked"
            for index, sock in enumerate(others, start=1):
                sock.sendall(_request(index))
            time.sleep(0.3)  # in the server's socket buffers while its loop is held
            release.set()
            for sock in socks:
                assert read_answer(sock).startswith(b"HTTP/1.1 200")
        finally:
            release.set()
            for sock in socks:
                sock.close()
    # The first request was alone: it went through without yielding. The four read together
    # were each checked, then each did its work, then each was answered.
    assert phases == (
        ["check", "work", "answer"]
        + ["check"] * CONCURRENT
        + ["work"] * CONCURRENT
        + ["answer"] * CONCURRENT
    )
