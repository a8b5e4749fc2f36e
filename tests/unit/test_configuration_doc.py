"""docs/configuration.md lists every flag the command line has, and no flag it lacks."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from chimeproxy.cli import build_parser

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def _subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise AssertionError(f"no {name} command")


def _section(title: str) -> str:
    start = DOC.index(f"## `chimeproxy {title}`")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else None]


@pytest.mark.parametrize("command", ["serve", "sip-edge"])
def test_every_flag_is_documented_once(command: str) -> None:
    flags = {
        option
        for action in _subcommand(command)._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    documented = set(re.findall(r"^\| `(--[a-z-]+)`", _section(command), re.MULTILINE))
    assert flags == documented


def test_serve_environment_twins_follow_the_naming_rule() -> None:
    for action in _subcommand("serve")._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                twin = "CHIMEPROXY_" + option[2:].upper().replace("-", "_")
                assert twin in (action.help or ""), f"{option} help should name {twin}"
