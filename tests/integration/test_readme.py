"""The README's examples, run from the README's own text on a "clean machine": a home without
`~/.aws`, no AWS_* variables, no `chimeproxy` on PATH, a directory of its own.

What the test changes, and only this: the install step (`python3 -m venv .venv && .venv/bin/pip
install ...`) is the test environment itself, so `.venv/bin/python` and `.venv/bin/chimeproxy`
are this interpreter and this checkout; the README's ports (8089, 8090, 8091) become free
ports, and the PostgreSQL example's database a fresh test database. Every command and every
line of Python is the README's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chimeproxy.testing import create_postgres_database, drop_test_database, free_port
from tests.conftest import IN_CI, _postgres_unavailable
from tests.integration.helpers import aws_cli

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# The sections whose examples a new user runs; the others run the test suite, the benchmark
# or Kamailio, which have tests of their own.
RUN = (
    "Run it",
    "Use it from boto3",
    "Authentication, rate limits",
    "In your own test suite",
    "PostgreSQL and many processes",
)
README_PORTS = ("8089", "8090", "8091")
README_POSTGRES = "postgresql://postgres@127.0.0.1:5432/chimeproxy"
INSTALL = re.compile(r"^python3 -m venv \.venv && \.venv/bin/pip install [^&]+ && ")


@dataclass
class Block:
    section: str
    language: str
    code: str


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    section = ""
    lines = iter(README.read_text().splitlines())
    for line in lines:
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif line.startswith("```") and section in RUN:
            language = line[3:].strip()
            code = []
            for body in lines:
                if body.startswith("```"):
                    break
                code.append(body)
            blocks.append(Block(section, language, "\n".join(code) + "\n"))
    return blocks


class CleanMachine:
    """A directory, a home and an environment as on a machine that never saw AWS."""

    def __init__(self, root: Path) -> None:
        self.work = root / "work"
        self.home = root / "home"
        for directory in (self.work, self.home, root / "path", self.work / ".venv" / "bin"):
            directory.mkdir(parents=True)
        venv = self.work / ".venv" / "bin"
        # The install step's result: this interpreter with this checkout's chimeproxy.
        (venv / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
        (venv / "chimeproxy").write_text(
            f'#!/bin/sh\nexec {sys.executable} -m chimeproxy.cli "$@"\n'
        )
        for script in venv.iterdir():
            script.chmod(0o755)
        # The AWS CLI on PATH, and nothing else of the test environment (no `chimeproxy`).
        (root / "path" / "aws").symlink_to(aws_cli())
        self.env = {
            "HOME": str(self.home),
            "PATH": f"{root / 'path'}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(ROOT / "src"),
            "LANG": "C.UTF-8",
            # The pytest plugin's database (the suite's PostgreSQL pass runs it there too).
            **{k: v for k, v in os.environ.items() if k.startswith("CHIMEPROXY_TEST_")},
        }
        self.ports = {port: str(free_port()) for port in README_PORTS}
        self.servers: list[subprocess.Popen[bytes]] = []

    def text(self, code: str) -> str:
        for readme_port, port in self.ports.items():
            code = code.replace(readme_port, port)
        return code

    def run(self, command: list[str], timeout: float = 120) -> str:
        result = subprocess.run(
            command,
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def shell(self, code: str) -> str:
        return self.run(["bash", "-euo", "pipefail", "-c", self.text(code)])

    def start_server(self, code: str, database: str | None = None) -> None:
        """A README command that starts a server: in the background, until it answers."""
        command = INSTALL.sub("", self.text(code).strip())
        if database is not None:
            command = command.replace(README_POSTGRES, database)
        port = re.search(r"--port (\d+)", command)
        env = dict(self.env)
        if port is None:  # the default port, 8089 in the README
            env["CHIMEPROXY_PORT"] = self.ports["8089"]
        log = (self.work / f"server-{len(self.servers)}.log").open("wb")
        self.servers.append(
            subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        url = f"http://127.0.0.1:{port.group(1) if port else self.ports['8089']}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.servers[-1].poll() is None, Path(log.name).read_text()
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/_chimeproxy/health", timeout=2) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"{command} did not start:\n{Path(log.name).read_text()}")

    def stop_servers(self) -> None:
        for server in self.servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()
        self.servers.clear()


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[CleanMachine]:
    clean = CleanMachine(tmp_path)
    try:
        yield clean
    finally:
        clean.stop_servers()


def test_every_readme_example_runs_as_written_on_a_clean_machine(machine: CleanMachine) -> None:
    assert not (machine.home / ".aws").exists()
    assert not any(name.startswith("AWS_") for name in machine.env)
    assert shutil.which("chimeproxy", path=machine.env["PATH"]) is None
    blocks = readme_blocks()
    assert {block.section for block in blocks} == set(RUN), "a section lost its examples"
    ran: list[str] = []
    for block in blocks:
        if block.section == "PostgreSQL and many processes":
            continue  # below
        if "chimeproxy serve" in block.code:
            # Set-up lines first (a credentials file), then the server in the background.
            *setup, command = block.code.strip().splitlines()
            assert "chimeproxy serve" in command, block.code
            if setup:
                machine.shell("\n".join(setup) + "\n")
            machine.start_server(command)
        elif block.language == "python" and "def test_" in block.code:
            (machine.work / "test_rides.py").write_text(block.code)
            out = machine.run([".venv/bin/python", "-m", "pytest", "-q", "test_rides.py"])
            assert "1 passed" in out, out
        elif block.language == "python":
            (machine.work / "rides.py").write_text(machine.text(block.code))
            out = machine.run([".venv/bin/python", "rides.py"])
            assert re.fullmatch(r"\+1206555\d{4}\n", out), out  # a proxy number from the pool
        else:
            assert block.language == "sh", block
            out = machine.shell(block.code)
            if "list-voice-connectors" in block.code:
                assert '"VoiceConnectors"' in out, out
            if "_chimeproxy/clock" in block.code:
                assert '"now_ms"' in out, out
        ran.append(block.code.splitlines()[0])
    assert len(ran) >= 9, ran

    postgres = [b for b in blocks if b.section == "PostgreSQL and many processes"]
    assert [b.language for b in postgres] == ["sh"]
    if reason := _postgres_unavailable():
        if IN_CI:
            pytest.fail(f"the README's PostgreSQL example needs a server in CI: {reason}")
        pytest.skip(f"the README's PostgreSQL example: {reason}")
    machine.stop_servers()  # the README's servers so far; this one takes the default port too
    database = create_postgres_database()
    try:
        machine.start_server(postgres[0].code, database=database)
        out = machine.shell(
            "export AWS_ENDPOINT_URL_CHIME_SDK_VOICE=http://127.0.0.1:8089 "
            "AWS_ACCESS_KEY_ID=AKIAEXAMPLE AWS_SECRET_ACCESS_KEY=any AWS_DEFAULT_REGION=us-east-1\n"
            "aws chime-sdk-voice create-voice-connector --name pg --no-require-encryption\n"
        )
        assert '"VoiceConnectorId"' in out
    finally:
        machine.stop_servers()
        drop_test_database(database)
