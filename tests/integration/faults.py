"""Tools for the tests that put a real server under stress or inject faults: servers that stop
themselves, raw HTTP over sockets, bursts of concurrent requests, health polling."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from chimeproxy.testing import ChimeProxyServer

HEALTH = b"GET /_chimeproxy/health HTTP/1.1\r\nHost: chimeproxy\r\n\r\n"


@contextlib.contextmanager
def running(*servers: ChimeProxyServer) -> Iterator[tuple[ChimeProxyServer, ...]]:
    """Start the servers; stop every one of them on the way out, whatever happened."""
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.callback(server.stop)
            server.start()
        yield servers


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer (headers and a Content-Length body); b"" when the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
