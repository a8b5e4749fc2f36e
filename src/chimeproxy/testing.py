"""pytest plugin: a real chimeproxy server for your test suite.

Installed with chimeproxy (entry point `pytest11`). The `chimeproxy_server` fixture starts a
server process on a free port over a temporary database with clock control, points
`AWS_ENDPOINT_URL_CHIME_SDK_VOICE` at it, gives boto3 dummy credentials and the region
`us-east-1` when the environment has none (the server accepts any key), and yields a handle with
`url`, `advance(seconds)` and `client()`.
The database is a SQLite file, or with CHIMEPROXY_TEST_DATABASE=postgresql a new PostgreSQL
database per server (made through CHIMEPROXY_TEST_POSTGRES_URL, dropped afterwards).
"""

from __future__ import annotations

import atexit
import contextlib
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
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ENDPOINT_ENV = "AWS_ENDPOINT_URL_CHIME_SDK_VOICE"
# What boto3 and the AWS CLI need beyond the endpoint, for a machine with no AWS set-up: the
# server is in open mode, so any key will do.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIDCHIMEPROXYTEST", "AWS_SECRET_ACCESS_KEY": "any"}
DEFAULT_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen[Any], sig: int, timeout: float) -> int:
    """Signals `process` to stop, kills it if it has not within `timeout` s; its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class ChimeProxyServer:
    """A chimeproxy server process: start it, talk to `url`, move its clock, stop it."""

    database: str
    port: int = field(default_factory=free_port)
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    # A command the server runs under, e.g. ("prlimit", "--nofile=1024:1024", "--").
    launcher: Sequence[str] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ChimeProxyServer:
        command = [
            *self.launcher, sys.executable, "-m", "chimeproxy.cli", "serve",
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
        code = stop_process(self.process, sig, timeout)
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


# Test databases. CHIMEPROXY_TEST_DATABASE=postgresql makes every test database a fresh
# PostgreSQL database, created through CHIMEPROXY_TEST_POSTGRES_URL (any database the user may
# CREATE DATABASE from) and dropped when the test is done, or at the latest when the process exits.

TEST_DATABASE_ENV = "CHIMEPROXY_TEST_DATABASE"
TEST_POSTGRES_URL_ENV = "CHIMEPROXY_TEST_POSTGRES_URL"
DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
_created_databases: set[str] = set()


def backend_under_test() -> str:
    """`sqlite` (the default) or `postgresql`, from CHIMEPROXY_TEST_DATABASE."""
    backend = os.environ.get(TEST_DATABASE_ENV, "sqlite").strip().lower() or "sqlite"
    if backend in ("postgres", "postgresql", "pg"):
        return "postgresql"
    if backend != "sqlite":
        raise ValueError(f"{TEST_DATABASE_ENV} must be sqlite or postgresql, not {backend!r}")
    return backend


def postgres_admin_url() -> str:
    return os.environ.get(TEST_POSTGRES_URL_ENV, DEFAULT_TEST_POSTGRES_URL)


def postgres_unavailable() -> str | None:
    """Why no test PostgreSQL can be used, or None when it can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'chimeproxy[postgres]')"
    try:
        with psycopg.connect(_libpq_url(postgres_admin_url()), connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"no PostgreSQL at {postgres_admin_url()}: {first_line}"
    return None


def create_postgres_database() -> str:
    """A new, empty PostgreSQL database; its URL. Dropped by `drop_test_database`, or at exit."""
    import psycopg

    name = f"chimeproxy_test_{uuid.uuid4().hex[:16]}"
    admin = _libpq_url(postgres_admin_url())
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(postgres_admin_url(), name)
    if not _created_databases:
        atexit.register(drop_test_databases)
    _created_databases.add(url)
    return url


def fresh_database_url(directory: Path) -> str:
    """A fresh database for one server: a SQLite file in `directory`, or a new PostgreSQL
    database when CHIMEPROXY_TEST_DATABASE=postgresql."""
    if backend_under_test() == "postgresql":
        return create_postgres_database()
    return f"sqlite:///{directory / 'chimeproxy.db'}"


def drop_test_database(url: str) -> None:
    """Drop a database made by `create_postgres_database` (nothing for SQLite files)."""
    if url not in _created_databases:
        return
    import psycopg

    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    admin = _libpq_url(postgres_admin_url())
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
        # FORCE: a server killed by a test may have left connections behind for a moment.
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _created_databases.discard(url)


def drop_test_databases() -> None:
    """Drop every test database this process created and has not dropped yet."""
    for url in list(_created_databases):
        with contextlib.suppress(Exception):
            drop_test_database(url)


def _libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as libpq takes it."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    head = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{head}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
def chimeproxy_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ChimeProxyServer]:
    """A fresh server over a temporary database (SQLite, or PostgreSQL when
    CHIMEPROXY_TEST_DATABASE=postgresql), with clock control."""
    database = fresh_database_url(tmp_path)
    try:
        server = ChimeProxyServer(
            database=database,
            extra_args=["--clock-control"],
            log_path=tmp_path / "chimeproxy.log",
        ).start()
        monkeypatch.setenv(ENDPOINT_ENV, server.url)
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            for name, value in DUMMY_CREDENTIALS.items():
                monkeypatch.setenv(name, value)
            # A named profile that does not exist here would stop boto3 before any call.
            monkeypatch.delenv("AWS_PROFILE", raising=False)
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            monkeypatch.setenv("AWS_DEFAULT_REGION", DEFAULT_REGION)
        try:
            yield server
        finally:
            server.stop()
    finally:
        drop_test_database(database)
