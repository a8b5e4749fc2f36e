"""pytest plugin: a real chimeproxy server for your test suite.

Installed with chimeproxy (entry point `pytest11`). The `chimeproxy_server` fixture starts a
server process on a free port over a temporary database with clock control, points
`AWS_ENDPOINT_URL_CHIME_SDK_VOICE` at it, and yields a handle with `url` and `advance(seconds)`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ENDPOINT_ENV = "AWS_ENDPOINT_URL_CHIME_SDK_VOICE"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ChimeProxyServer:
    """A chimeproxy server process: start it, talk to `url`, move its clock, stop it."""

    database: str
    port: int = field(default_factory=free_port)
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ChimeProxyServer:
        command = [
            sys.executable, "-m", "chimeproxy.cli", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--database", self.database, *self.extra_args,
        ]  # fmt: skip
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="chimeproxy-", suffix=".log")[1])
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chimeproxy exited at start:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_chimeproxy/health", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"chimeproxy did not become healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def advance(self, seconds: float) -> int:
        """Move the server's clock forward (needs `--clock-control`); returns its new time."""
        request = urllib.request.Request(
            f"{self.url}/_chimeproxy/clock",
            data=json.dumps({"advance_seconds": seconds}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())["now_ms"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def client(self, **kwargs: Any) -> Any:
        """A boto3 `chime-sdk-voice` client for this server (dummy credentials by default)."""
        import boto3

        options = {
            "region_name": "us-east-1",
            "aws_access_key_id": "AKIDEXAMPLE",
            "aws_secret_access_key": "secret",
            "endpoint_url": self.url,
        } | kwargs
        return boto3.client("chime-sdk-voice", **options)


@pytest.fixture
def chimeproxy_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ChimeProxyServer]:
    """A fresh server over a temporary SQLite database, with clock control."""
    server = ChimeProxyServer(
        database=f"sqlite:///{tmp_path / 'chimeproxy.db'}",
        extra_args=["--clock-control"],
        log_path=tmp_path / "chimeproxy.log",
    ).start()
    monkeypatch.setenv(ENDPOINT_ENV, server.url)
    try:
        yield server
    finally:
        server.stop()
