"""Answers written in one step (chimeproxy.direct), as the wire shows them: a real server
process, raw sockets, and what HTTP/1.1 asks of each answer (framing, HEAD, closing,
pipelining) and of a trusted proxy's forwarded headers."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from chimeproxy.app import ChimeProxyApp
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import in_process_settings
from tests.integration.faults import content_length, in_process_server, read_answer

HEALTH = b"GET /_chimeproxy/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _connect(server: ChimeProxyServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _head_and_body(answer: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def _header_names(lines: list[bytes]) -> list[bytes]:
    return [line.split(b":", 1)[0].lower() for line in lines[1:]]


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (reads end, nothing more arrives)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_an_answer_is_one_framed_message_with_every_header_once(server: ChimeProxyServer) -> None:
    with _connect(server) as sock:
        sock.sendall(HEALTH)
        lines, body = _head_and_body(read_answer(sock))
    assert lines[0] == b"HTTP/1.1 200 OK"
    names = _header_names(lines)
    assert sorted(names) == sorted(set(names)), names
    for name in (b"date", b"content-length", b"content-type", b"x-amzn-requestid"):
        assert name in names
    assert b"transfer-encoding" not in names and b"connection" not in names
    assert content_length(b"\r\n".join(lines)) == len(body)
    assert json.loads(body)["status"] == "ok"


def test_errors_keep_their_type_header_and_the_connection(server: ChimeProxyServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /no-such-thing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        lines, body = _head_and_body(read_answer(sock))
        assert lines[0] == b"HTTP/1.1 404 Not Found"
        assert b"x-amzn-errortype: UnknownOperationException" in lines
        assert "no-such-thing" in json.loads(body)["Message"]
        sock.sendall(HEALTH)  # kept alive: the next request on it is answered
        assert read_answer(sock).startswith(b"HTTP/1.1 200 ")


def test_head_is_answered_without_a_body_and_the_next_request_still_parses(
    server: ChimeProxyServer,
) -> None:
    with _connect(server) as sock:
        sock.sendall(b"HEAD /no-such-thing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + HEALTH)
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 404 ")
    assert content_length(first) > 0  # what a GET would have carried
    assert rest.startswith(b"HTTP/1.1 200 "), "HEAD's body was sent"


def test_pipelined_requests_are_answered_in_order(server: ChimeProxyServer) -> None:
    ready = HEALTH.replace(b"/health", b"/ready")
    with _connect(server) as sock:
        sock.sendall(HEALTH + ready + HEALTH)
        answers = [read_answer_exactly(sock) for _ in range(3)]
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers)
    ids = [_request_id(answer) for answer in answers]
    assert len(set(ids)) == 3


def read_answer_exactly(sock: socket.socket) -> bytes:
    """One answer, reading byte by byte past its head so that nothing of the next is taken."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, head
        head += byte
    body = b""
    while len(body) < content_length(head):
        body += sock.recv(content_length(head) - len(body))
    return head + body


def _request_id(answer: bytes) -> bytes:
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"x-amzn-requestid:"):
            return line.split(b":", 1)[1].strip()
    raise AssertionError(answer)


def test_connection_close_is_answered_and_then_closed(server: ChimeProxyServer) -> None:
    for request in (
        HEALTH.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
        HEALTH.replace(b"HTTP/1.1", b"HTTP/1.0"),
    ):
        with _connect(server) as sock:
            sock.sendall(request)
            lines, _ = _head_and_body(read_answer(sock))
            assert b"connection: close" in lines
            assert _closed(sock)


def test_a_trusted_proxy_s_forwarded_address_still_counts(server: ChimeProxyServer) -> None:
    """uvicorn believes X-Forwarded-For from loopback: the data plane, open to loopback callers
    only when it has no route secret, then sees a caller from afar."""
    document = {"caller": "+12065550100", "called": "+12065550199", "kind": "voice"}
    local = httpx.post(f"{server.url}/_chimeproxy/route", json=document, timeout=10)
    assert local.status_code == 200, local.text
    remote = httpx.post(
        f"{server.url}/_chimeproxy/route",
        json=document,
        headers={"X-Forwarded-For": "203.0.113.9"},
        timeout=10,
    )
    assert remote.status_code == 403, remote.text
    assert "loopback callers only" in remote.json()["Message"]


def _paths_taken(app: ChimeProxyApp) -> list[str]:
    """Record which path each request takes: the direct entry, or ASGI."""
    taken: list[str] = []
    direct_entry, asgi = app.answer_directly, app._http

    async def answer_directly(scope: Any, receive: Any, respond: Any) -> None:
        taken.append("direct")
        await direct_entry(scope, receive, respond)

    async def http(scope: Any, receive: Any, send: Any) -> None:
        taken.append("asgi")
        await asgi(scope, receive, send)

    app.answer_directly = answer_directly  # type: ignore[method-assign]
    app._http = http  # type: ignore[method-assign]
    return taken


FORWARDED = HEALTH.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")


@pytest.mark.parametrize("proxy_headers", [True, False])
def test_requests_take_the_direct_path_unless_a_proxy_s_headers_must_be_read(
    tmp_path: Path, proxy_headers: bool
) -> None:
    app = ChimeProxyApp(in_process_settings(tmp_path), announce=False)
    taken = _paths_taken(app)
    with in_process_server(app, proxy_headers=proxy_headers) as port:
        for request in (HEALTH, FORWARDED, HEALTH):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
    # Without uvicorn's proxy headers middleware, forwarded headers mean nothing.
    forwarded = "asgi" if proxy_headers else "direct"
    assert taken == ["direct", forwarded, "direct"]
