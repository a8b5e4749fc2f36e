"""Tools for the tests that put a real server under stress or inject faults: servers that stop
themselves, raw HTTP over sockets, bursts of concurrent requests, health polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from chimeproxy import connections
from chimeproxy.testing import ChimeProxyServer, free_port
from tests.conftest import IN_CI

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
    length = content_length(head)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def content_length(head: bytes) -> int:
    """The Content-Length of an answer's head (0 when it has none)."""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def health_of(port: int, timeout: float = 5.0, path: str = "/_chimeproxy/health") -> Answer:
    """One health (or readiness) request on a new connection, timed."""
    started = time.monotonic()
    request = HEALTH.replace(b"/_chimeproxy/health", path.encode())
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        raw = read_answer(sock)
    return Answer.parse(raw, time.monotonic() - started, started)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    seconds: float
    asked_at: float  # time.monotonic() when the request left

    @classmethod
    def parse(cls, raw: bytes, seconds: float, asked_at: float) -> Answer:
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        return cls(status, body, seconds, asked_at)

    def json(self) -> Any:
        return json.loads(self.body)


class HealthWatch:
    """Asks for health every `interval` seconds from a thread of its own, on a new connection
    each time, until stopped: every answer (or the error in its place) with its time."""

    def __init__(self, port: int, interval: float = 0.05, timeout: float = 5.0) -> None:
        self.port, self.interval, self.timeout = port, interval, timeout
        self.answers: list[Answer | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(health_of(self.port, self.timeout))
            except OSError as exc:
                self.answers.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def problems(self, limit_s: float) -> list[str]:
        """Answers that were not a 200 "ok" within `limit_s` seconds."""
        found = []
        for answer in self.answers:
            if isinstance(answer, str):
                found.append(answer)
            elif answer.status != 200 or answer.seconds >= limit_s:
                found.append(f"{answer.status} after {answer.seconds:.3f} s: {answer.body!r}")
            elif answer.json()["status"] != "ok":
                found.append(f"{answer.json()}")
        return found


def burst(port: int, requests: Sequence[bytes]) -> list[int | str]:
    """Send every request at once, each on its own connection; the statuses (or errors)."""

    async def one(request: bytes) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(content_length(head))
            return int(head.split(b" ", 2)[1])
        finally:
            writer.close()

    async def all_at_once() -> list[int | BaseException]:
        return await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)

    return [
        answer if isinstance(answer, int) else f"{type(answer).__name__}: {answer}"
        for answer in asyncio.run(all_at_once())
    ]


def json_request(method: str, path: str, document: Any = None) -> bytes:
    """A raw HTTP/1.1 request (closing its connection) with a JSON body when given one."""
    body = b"" if document is None else json.dumps(document).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: chimeproxy\r\nConnection: close\r\n"
    if document is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


# Faults of the file system: a small tmpfs of the test's own (we are root in CI).


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path`: a disk that fills up, or turns read-only."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}"
        if IN_CI:
            pytest.fail(f"{reason}; CI runs as root")
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    """Remount the tmpfs on `path` `ro` or `rw`."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill(directory: Path) -> Path:
    """A file that takes every free byte of `directory`'s file system; delete it to free them."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        with contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                out.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0")
    return filler


# Processes.


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` now."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def running_process(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def in_process_server(app: Any, **options: Any) -> Iterator[int]:
    """uvicorn with chimeproxy's protocol, serving `app` in a thread; its port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http=connections.protocol_factory(connections.ConnectionLimits(10.0, 100)),
            log_config=None,
            access_log=False,
            **options,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(30)
