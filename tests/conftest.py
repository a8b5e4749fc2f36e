"""Shared fixtures: a real chimeproxy server process per test module, and boto3 clients."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from chimeproxy.settings import Settings
from chimeproxy.testing import (
    ChimeProxyServer,
    backend_under_test,
    drop_test_database,
    drop_test_databases,
    fresh_database_url,
    postgres_unavailable,
)
from tests.integration.stubs import Recorder

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """The path of an outside tool; a clear skip on a developer machine, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


# The backend the suite runs on: scripts/test.sh runs it once on each (CHIMEPROXY_TEST_DATABASE).
BACKEND = backend_under_test()


@functools.cache
def _postgres_unavailable() -> str | None:
    return postgres_unavailable()


def database_url(tmp_path: Path) -> str:
    """A fresh database for one server: a SQLite file in `tmp_path`, or with
    CHIMEPROXY_TEST_DATABASE=postgresql a new PostgreSQL database (dropped at the end of the
    run, or earlier with `drop_test_database`). No PostgreSQL: a skip, but a failure in CI."""
    if BACKEND == "postgresql" and (reason := _postgres_unavailable()):
        if IN_CI:
            pytest.fail(f"the PostgreSQL pass needs a server in CI: {reason}")
        pytest.skip(f"PostgreSQL pass: {reason}")
    return fresh_database_url(tmp_path)


def in_process_settings(tmp_path: Path) -> Settings:
    """Settings for an app driven in-process (no server process): open mode, a SQLite file in
    `tmp_path`, the sweeper's interval out of the way, warnings only."""
    return Settings(
        database=f"sqlite:///{tmp_path / 'db.sqlite'}",
        auth="open",
        sweep_interval_seconds=3600,
        log_level="warning",
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    drop_test_databases()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    """One server per test module; tests keep apart by using their own voice connectors."""
    directory = tmp_path_factory.mktemp("server")
    database = database_url(directory)
    running = ChimeProxyServer(
        database=database,
        extra_args=["--clock-control"],
        log_path=directory / "server.log",
    ).start()
    yield running
    running.stop()
    drop_test_database(database)


def write_credentials(directory: Path, *rows: tuple[str, str, str]) -> Path:
    """A credentials file of (access key id, secret, account) rows in `directory`, readable
    only by its owner, as the docs ask."""
    path = directory / "credentials.csv"
    path.write_text(
        "access_key_id,secret_access_key,account_id\n"
        + "".join(f"{k},{s},{a}\n" for k, s, a in rows)
    )
    path.chmod(0o600)
    return path


def start_strict_server(
    directory: Path, key: str, secret: str, account: str, *extra_args: str
) -> ChimeProxyServer:
    """A server in strict SigV4 mode that knows one access key, over a fresh database."""
    credentials = write_credentials(directory, (key, secret, account))
    return ChimeProxyServer(
        database=database_url(directory),
        extra_args=["--credentials", str(credentials), *extra_args],
        log_path=directory / "server.log",
    ).start()


# Where a client made by `make_client` keeps the raw body of an error answer, in the response
# of the ClientError (botocore parses only the modelled errors' members out of it).
ERROR_BODY = "ErrorBody"


def _keep_error_body(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    if response_dict["status_code"] >= 300:
        customized_response_dict[ERROR_BODY] = response_dict["body"]


def make_client(url: str, *, session: boto3.session.Session | None = None, **overrides: Any) -> Any:
    """A `chime-sdk-voice` client that never retries (a refusal or a 500 cannot hide behind a
    successful second try), from `session` or boto3's default one."""
    options: dict[str, Any] = {
        "region_name": "us-east-1",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "secret",
        "endpoint_url": url,
        "config": Config(retries={"total_max_attempts": 1}),
    } | overrides
    made = (session or boto3).client("chime-sdk-voice", **options)
    made.meta.events.register("before-parse.chime-sdk-voice", _keep_error_body)
    return made


@pytest.fixture(scope="module")
def client(server: ChimeProxyServer) -> Any:
    return make_client(server.url)


@pytest.fixture(scope="module")
def http(server: ChimeProxyServer) -> Iterator[httpx.Client]:
    """Unsigned raw HTTP to the module's server (open mode on loopback), for what boto3 won't
    send and to see answers as they are on the wire."""
    with httpx.Client(base_url=server.url, timeout=20) as raw:
        yield raw


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    """A fresh database of the test's own (see `database_url`), dropped after it."""
    url = database_url(tmp_path)
    yield url
    drop_test_database(url)


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """A local HTTP server standing in for the outside world (webhooks, SMS providers)."""
    with Recorder() as running:
        yield running
