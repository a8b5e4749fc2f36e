"""Connections as clients and load balancers hold them: keep-alive between requests, and the
header timeout for connections that do not send their request."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url
from tests.integration.faults import HEALTH, read_answer, running


def test_an_idle_keep_alive_connection_outlives_sdk_idle_times(tmp_path: Path) -> None:
    """uvicorn's default closed idle connections after 5 s, and the AWS SDK for JavaScript lost
    calls made on a socket idle about that long; the default is now 75 s, and configurable."""
    (tmp_path / "short").mkdir()
    default = ChimeProxyServer(database=database_url(tmp_path), log_path=tmp_path / "a.log")
    short = ChimeProxyServer(
        database=database_url(tmp_path / "short"),
        extra_args=["--keep-alive-timeout", "1"],
        log_path=tmp_path / "b.log",
    )
    with running(default, short):
        connections = {}
        for name, server in (("default", default), ("short", short)):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(HEALTH)
            assert read_answer(sock).startswith(b"HTTP/1.1 200")
            connections[name] = sock
        time.sleep(6.5)
        connections["default"].sendall(HEALTH)
        assert read_answer(connections["default"]).startswith(b"HTTP/1.1 200")
        assert connections["short"].recv(1) == b""  # closed by the server after 1 s
        for sock in connections.values():
            sock.close()


def _with_header_timeout(tmp_path: Path, seconds: int) -> ChimeProxyServer:
    return ChimeProxyServer(
        database=database_url(tmp_path),
        extra_args=["--header-timeout", str(seconds)],
        log_path=tmp_path / "server.log",
    )


def test_the_header_timeout_closes_slow_headers_but_not_an_idle_keep_alive_connection(
    tmp_path: Path,
) -> None:
    """--header-timeout bounds the time to send a request's headers, from the connection's
    opening or from the first byte after a keep-alive pause; the pause itself is the
    keep-alive timeout's."""
    server = _with_header_timeout(tmp_path, 1)
    with running(server):
        kept = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        kept.sendall(HEALTH)
        assert read_answer(kept).startswith(b"HTTP/1.1 200")
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        slow.sendall(HEALTH[:20])  # never the whole headers
        opened = time.monotonic()
        assert slow.recv(1) == b""  # closed by the server
        assert 0.9 < time.monotonic() - opened < 5
        time.sleep(1.5)  # idle between requests for longer than the header timeout
        kept.sendall(HEALTH)
        assert read_answer(kept).startswith(b"HTTP/1.1 200")
        kept.sendall(HEALTH[:20])  # the next request stalls in its headers
        assert kept.recv(1) == b""
        for sock in (kept, slow):
            sock.close()


def test_a_request_s_header_clock_starts_at_its_own_first_byte(tmp_path: Path) -> None:
    """The timer armed for a connection's first request stays armed after it (re-arming one per
    request was measurable); when it fires during a later request's headers, it must give that
    request its whole timeout, counted from its own first byte."""
    server = _with_header_timeout(tmp_path, 2)
    with running(server):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(HEALTH)  # its clock (and the timer) started at the opening
        assert read_answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(1.2)
        sock.sendall(HEALTH[:20])  # the next request stalls, 1.2 s into the first timer's 2
        stalled = time.monotonic()
        assert sock.recv(1) == b""  # closed ...
        assert 1.9 < time.monotonic() - stalled < 4  # ... 2 s after its first byte, not 0.8
        sock.close()


def test_the_keep_alive_clock_restarts_at_each_answer(tmp_path: Path) -> None:
    """The connection's timer stays armed across requests (arming one per answer was
    measurable): a connection used more often than its keep-alive timeout stays open past it,
    and closes that long after its last answer."""
    server = ChimeProxyServer(
        database=database_url(tmp_path),
        extra_args=["--keep-alive-timeout", "1"],
        log_path=tmp_path / "server.log",
    )
    with running(server):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        for _ in range(4):  # 2.4 s in all, each pause shorter than the timeout
            sock.sendall(HEALTH)
            assert read_answer(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.6)
        answered = time.monotonic() - 0.6
        assert sock.recv(1) == b""  # closed ...
        assert 0.9 < time.monotonic() - answered < 3  # ... about 1 s after the last answer
        sock.close()


def test_a_header_timeout_shorter_than_the_keep_alive_wait_still_holds(tmp_path: Path) -> None:
    """A request that stalls in its headers soon after a keep-alive wait began is closed by
    the header timeout, not when the longer keep-alive wait would have ended."""
    server = ChimeProxyServer(
        database=database_url(tmp_path),
        extra_args=["--keep-alive-timeout", "30", "--header-timeout", "1"],
        log_path=tmp_path / "server.log",
    )
    with running(server):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(HEALTH)
        assert read_answer(sock).startswith(b"HTTP/1.1 200")  # a 30 s keep-alive wait begins
        # The timer armed for the first request's headers fires meanwhile and re-arms itself
        # for the keep-alive wait's end, 30 s away.
        time.sleep(1.3)
        sock.sendall(HEALTH[:20])
        stalled = time.monotonic()
        assert sock.recv(1) == b""
        assert 0.9 < time.monotonic() - stalled < 4
        sock.close()


def test_answers_finished_together_all_leave_and_none_waits_behind_a_request_in_progress(
    tmp_path: Path,
) -> None:
    """Under load, the answers finished in one turn of the event loop leave together at its end
    (connections.CoalescingTransport): each must still leave, and one must not be held while
    another request is in progress but has nothing to send (its body still on the way)."""
    server = ChimeProxyServer(database=database_url(tmp_path), log_path=tmp_path / "server.log")
    with running(server):
        waiting_body = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        waiting_body.sendall(
            b"POST /voice-connectors HTTP/1.1\r\nHost: chimeproxy\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"Name":'
        )
        time.sleep(0.2)  # its request is now in progress, reading its body
        together = [
            socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(24)
        ]
        started = time.monotonic()
        for sock in together:  # all in flight at once: answered in the same turns
            sock.sendall(HEALTH)
        for sock in together:
            assert read_answer(sock).startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < 2
        alone = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        started = time.monotonic()
        alone.sendall(HEALTH)  # answered while the first request still waits for its body
        assert read_answer(alone).startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < 1
        waiting_body.sendall(b' "x"}'.ljust(92))  # the rest of its 100 bytes
        assert read_answer(waiting_body).startswith(b"HTTP/1.1 4")  # unsigned: refused
        for sock in (waiting_body, alone, *together):
            sock.close()
