"""Shared fixtures: a real chimeproxy server process per test module, and boto3 clients."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chimeproxy.testing import ChimeProxyServer

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """The path of an outside tool; a clear skip on a developer machine, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chimeproxy.db'}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    """One server per test module; tests keep apart by using their own voice connectors."""
    directory = tmp_path_factory.mktemp("server")
    running = ChimeProxyServer(
        database=database_url(directory),
        extra_args=["--clock-control"],
        log_path=directory / "server.log",
    ).start()
    yield running
    running.stop()


def make_client(url: str, **overrides: Any) -> Any:
    options: dict[str, Any] = {
        "region_name": "us-east-1",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "secret",
        "endpoint_url": url,
        "config": Config(retries={"max_attempts": 1}),
    } | overrides
    return boto3.client("chime-sdk-voice", **options)


@pytest.fixture(scope="module")
def client(server: ChimeProxyServer) -> Any:
    return make_client(server.url)
