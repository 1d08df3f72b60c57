"""`--version` and help texts that show every option's default."""

from __future__ import annotations

import argparse
from importlib.metadata import version

import pytest

from flows.cli import build_parser
from tests.conftest import Cli


def test_version_prints_the_installed_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.code == 0
    assert result.stdout == f"piper-etl {version('piper-etl')}\n"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options_with_defaults(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if action.option_strings
        and action.default not in (None, argparse.SUPPRESS)
        and action.default is not False  # a flag: off unless given
    ]


WITHOUT_OPTIONS = {"save-token"}  # reads the token from a prompt or stdin; it has nothing to choose


@pytest.mark.parametrize("command", sorted(subcommands(build_parser())))
def test_every_option_with_a_default_shows_it_in_the_help(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PIPER_ORG_ID", "PIPER_BASE_URL", "PIPER_PRICING_FILE", "PIPER_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    sub = subcommands(build_parser())[command]
    formatter = sub._get_formatter()
    checked = options_with_defaults(sub)
    assert bool(checked) != (command in WITHOUT_OPTIONS), "every command but these has options with a default"
    for action in checked:
        shown = formatter._expand_help(action)
        assert f"(default: {action.default})" in " ".join(shown.split()), f"{command} {action.option_strings[0]}"


def test_a_default_from_the_environment_is_the_one_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPER_BASE_URL", "https://piper.example.com")
    help_text = " ".join(subcommands(build_parser())["load"].format_help().split())
    assert "--base-url BASE_URL API base URL (env PIPER_BASE_URL) (default: https://piper.example.com)" in help_text
