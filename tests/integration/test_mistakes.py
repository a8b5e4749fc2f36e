"""The mistakes a new user makes in the first hour: each gets one line on stderr naming the
cause and the fix, no traceback, and a non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chimeproxy.testing import free_port
from tests.conftest import database_url

# A PostgreSQL URL nothing needs to answer: every mistake below stops the command first.
POSTGRES = "postgresql://postgres@127.0.0.1:9/chimeproxy"


def chimeproxy(
    *args: str, cwd: Path, without: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command line; `without` makes a module unimportable, as if not installed."""
    prelude = f"import sys; sys.modules[{without!r}] = None; " if without else "import sys; "
    code = prelude + "from chimeproxy.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("CHIMEPROXY_")},
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The single line a failed command printed, checked for the fragments."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_postgresql_without_psycopg_says_what_to_install(tmp_path: Path) -> None:
    # serve on a free port: the default one may be in use, which it would report first.
    for command in (["serve", "--port", str(free_port())], ["db", "upgrade"]):
        result = chimeproxy(*command, "--database", POSTGRES, cwd=tmp_path, without="psycopg")
        one_line(result, "psycopg", "pip install 'chimeproxy[postgres]'")


@pytest.mark.parametrize(
    ("database", "fragments"),
    [
        ("/tmp/x.db", ["--database", "not a path", "sqlite:////tmp/x.db"]),
        ("x.db", ["--database", "sqlite:///x.db"]),
        ("mysql://x", ["--database", "mysql://", "sqlite:///PATH", "postgresql://"]),
        ("postgresql+psycopg2://u@h/db", ["--database", "psycopg 3"]),
        ("postgresql://u@h:port/db", ["--database", "not a valid database URL"]),
    ],
)
def test_a_database_that_is_not_a_usable_url(
    tmp_path: Path, database: str, fragments: list[str]
) -> None:
    for command in (["serve"], ["db", "upgrade"], ["numbers", "import", "n.csv"]):
        one_line(chimeproxy(*command, "--database", database, cwd=tmp_path), *fragments)
    env_result = subprocess.run(
        [sys.executable, "-m", "chimeproxy.cli", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "CHIMEPROXY_DATABASE": database},
        check=False,
    )
    one_line(env_result, *fragments)
    assert not (tmp_path / "x.db").exists()


def test_an_unopenable_sqlite_file_is_named_with_the_reason(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/no/such/dir/x.db"
    for command in (["serve", "--port", str(free_port())], ["db", "upgrade"]):
        one_line(chimeproxy(*command, "--database", missing, cwd=tmp_path), missing, "unable")


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = chimeproxy(
            "serve", "--port", str(port), "--database", database_url(tmp_path), cwd=tmp_path
        )
        one_line(result, f"port {port} on 127.0.0.1 is already in use", "--port")
        workers = chimeproxy(
            "serve", "--workers", "2", "--port", str(port), "--database", database_url(tmp_path),
            cwd=tmp_path,
        )  # fmt: skip
        one_line(workers, f"port {port}", "already in use")


@pytest.mark.parametrize(
    ("port", "rule"), [("99999", "1 and 65535"), ("0", "1 and 65535"), ("http", "whole number")]
)
def test_a_port_out_of_range(tmp_path: Path, port: str, rule: str) -> None:
    """It once logged that it ran on 99999 and listened on a random port."""
    one_line(chimeproxy("serve", "--port", port, cwd=tmp_path), "--port", rule)


def test_an_address_not_of_this_host(tmp_path: Path) -> None:
    result = chimeproxy(
        "serve", "--host", "192.0.2.1", "--auth", "open", "--port", str(free_port()),
        "--database", database_url(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    one_line(result, "192.0.2.1", "no such address")


def test_clock_control_with_workers(tmp_path: Path) -> None:
    result = chimeproxy("serve", "--clock-control", "--workers", "2", cwd=tmp_path)
    one_line(result, "--clock-control", "--workers 1")


def test_serve_help_shows_every_default(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chimeproxy.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = " ".join(result.stdout.split())
    for shown in (
        "(default: 8089;",
        "(default: 127.0.0.1;",
        "(default: 75;",
        "sqlite:///chimeproxy.db",
    ):
        assert shown in text, shown
