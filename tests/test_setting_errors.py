"""A bad setting is refused before any request, named as the caller knows it: a CLI flag or a flow parameter."""

from __future__ import annotations

import asyncio

import pytest

from connector.errors import PiperConfigError
from flows.cli import LOAD_FLAGS
from flows.prefect_flow import load_sessions
from flows.settings import LoadSettings
from tests.conftest import Cli

BAD = [  # setting, unusable value, what is wrong with it
    ("concurrency", 0, "must be between 1 and 1024, not 0"),
    ("max_retries", -1, "must be 0 or more, not -1"),
    ("chunk_size", 0, "must be at least 1, not 0"),
    ("lock_timeout", -1.0, "must be 0 or more seconds, not -1.0"),
    ("max_consecutive_failures", -1, "must be 0 (off) or more, not -1"),
    ("circuit_breaker_seconds", -1.0, "must be 0 or more, not -1.0"),
    ("sessions_per_task", 0, "must be at least 1, not 0"),
]


@pytest.mark.parametrize(("setting", "value", "problem"), BAD)
def test_the_command_line_names_the_flag(cli: Cli, setting: str, value: object, problem: str) -> None:
    flag = LOAD_FLAGS[setting]
    result = cli("load", "--org-id", "org", f"{flag}={value}", "s-1")
    assert result.code == 2
    assert result.stderr == f"piper-etl load: error: {flag} {problem}\n"


@pytest.mark.parametrize(("setting", "value", "problem"), BAD)
def test_a_flow_run_names_the_parameter(setting: str, value: object, problem: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPER_API_TOKEN", "pat_x")
    with pytest.raises(PiperConfigError) as raised:
        asyncio.run(load_sessions.fn(session_ids=["s-1"], org_id="org", **{setting: value}))  # type: ignore[arg-type]
    assert str(raised.value) == f"{setting} {problem}"


def test_a_missing_org_id_names_the_flag_or_the_parameter(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("load", "s-1").stderr == "piper-etl load: error: no org id: pass --org-id or set PIPER_ORG_ID\n"
    monkeypatch.delenv("PIPER_ORG_ID", raising=False)
    with pytest.raises(PiperConfigError, match=r"^no org id: pass org_id or set PIPER_ORG_ID$"):
        asyncio.run(load_sessions.fn(session_ids=["s-1"]))


def test_an_empty_org_id_is_named_too() -> None:
    with pytest.raises(PiperConfigError, match=r"^--org-id is empty$"):
        LoadSettings.resolve({"org_id": ""}, {}, names=LOAD_FLAGS)
