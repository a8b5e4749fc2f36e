"""docs/configuration.md, `--help` and the command line all come from the settings
declarations: the page is what the declarations generate, and every flag's help shows its
default and its environment variable."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from chimeproxy.cli import build_parser, update_configuration_doc
from chimeproxy.dataplane.edge.settings import EdgeSettings
from chimeproxy.settings import Settings, options, shown

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
DECLARATIONS = {"serve": Settings, "sip-edge": EdgeSettings}


def _subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise AssertionError(f"no {name} command")


def test_the_page_is_what_the_declarations_generate() -> None:
    text = DOC.read_text()
    assert update_configuration_doc(text) == text, (
        "docs/configuration.md is stale: run "
        "python -m chimeproxy.cli --update-configuration-doc docs/configuration.md"
    )


@pytest.mark.parametrize("command", sorted(DECLARATIONS))
def test_every_flag_is_on_the_page_once(command: str) -> None:
    flags = [opt.flag for _, opt in options(DECLARATIONS[command])]
    text = DOC.read_text()
    section = text[text.index(f"<!-- generated: {command} -->") :]
    section = section[: section.index("<!-- end generated")]
    for flag in flags:
        assert section.count(f"| `{flag}` |") == 1, flag
    parser_flags = {
        option
        for action in _subcommand(command)._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert parser_flags == set(flags)


@pytest.mark.parametrize("command", sorted(DECLARATIONS))
def test_help_shows_each_default_and_environment_variable(command: str) -> None:
    help_text = " ".join(_subcommand(command).format_help().split())
    for item, opt in options(DECLARATIONS[command]):
        assert f"env {opt.env})" in help_text, opt.flag
        assert f"(default: {' '.join(shown(item, opt).split())};" in help_text, opt.flag


def test_server_environment_variables_follow_the_naming_rule() -> None:
    for _, opt in options(Settings):
        assert opt.env == "CHIMEPROXY_" + opt.flag[2:].upper().replace("-", "_")


def test_every_server_setting_but_two_has_a_flag() -> None:
    declared = {item.name for item, _ in options(Settings)}
    fields = {item.name for item in dataclasses.fields(Settings)}
    assert fields - declared == {"default_account", "default_region"}
