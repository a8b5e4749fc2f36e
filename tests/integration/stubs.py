"""Stand-ins for the outside world that tests run beside a real server."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the recorder answered

    def json(self) -> Any:
        return orjson.loads(self.body)


class Recorder:
    """A local HTTP server that records requests (an event receiver, an SMS webhook, an AWS
    endpoint); GETs are served from `files`, POSTs answered from `replies` (after
    `failures[path]` answers of 500)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.files: dict[str, bytes] = {}
        self.replies: dict[str, bytes] = {}
        self.failures: dict[str, int] = {}
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                content = recorder.files.get(self.path.partition("?")[0])
                status = 200 if content is not None else 404
                recorder._record(self, b"", status)
                self._answer(status, content or b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.partition("?")[0]
                with recorder.lock:
                    failing = recorder.failures.get(path, 0)
                    if failing:
                        recorder.failures[path] = failing - 1
                recorder._record(self, body, 500 if failing else 200)
                self._answer(500 if failing else 200, recorder.replies.get(path, b"{}"))

            def _answer(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes, status: int) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            self.requests.append(Recorded(handler.command, handler.path, headers, body, status))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self, path: str, method: str = "POST") -> list[Recorded]:
        with self.lock:
            return [
                r for r in self.requests if r.method == method and r.path.partition("?")[0] == path
            ]

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> list[Recorded]:
        """Requests, once `predicate(requests)` holds (for deliveries made in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                requests = list(self.requests)
            if predicate(requests) or time.monotonic() > deadline:
                return requests
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
