"""One settings object: every load setting is a CLI flag and a flow parameter, with one default, from one resolver."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path

import pytest

from connector.errors import PiperConfigError
from flows.cli import SETTINGS_FLAGS, build_parser
from flows.prefect_flow import load_sessions, sync_sessions
from flows.settings import ENVIRONMENT, LoadSettings, SyncOptions

NOT_SETTINGS = {"session_ids", "sessions_file", "engine", "help"}
"""`load` options that say what to load or how to run it, not how the load behaves."""


def load_parser(command: str = "load") -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def field_defaults() -> dict[str, object]:
    """Each setting's default (None for the org id, which has none)."""
    defaults: dict[str, object] = {}
    for f in dataclasses.fields(LoadSettings):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
        else:
            defaults[f.name] = None
    return defaults


def test_the_flow_takes_every_setting_with_the_same_default() -> None:
    parameters = dict(inspect.signature(load_sessions.fn).parameters)
    assert parameters.pop("session_ids")
    defaults = field_defaults()
    assert set(parameters) == set(defaults), "flow parameters and LoadSettings fields differ"
    for name, parameter in parameters.items():
        expected = defaults[name]
        if name in ENVIRONMENT:  # None: the environment variable, then the setting's default
            assert parameter.default is None, name
        elif isinstance(expected, Path):
            assert Path(parameter.default) == expected, name
        else:
            assert parameter.default == expected, name


def test_every_load_flag_is_a_setting_and_every_setting_a_load_flag() -> None:
    dests = {action.dest for action in load_parser()._actions} - NOT_SETTINGS
    assert dests == set(SETTINGS_FLAGS.values()), "a load flag that reaches no engine, or a setting with no flag"
    assert set(SETTINGS_FLAGS) == set(field_defaults())


def test_cli_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ENVIRONMENT.values():
        monkeypatch.delenv(variable, raising=False)
    defaults = field_defaults()
    by_dest = {action.dest: action.default for action in load_parser()._actions}
    for name, dest in SETTINGS_FLAGS.items():
        if name in ENVIRONMENT and by_dest[dest] is None:
            continue
        value = by_dest[dest]
        assert (Path(value) if name == "out_dir" else value) == defaults[name], name


def test_resolve_takes_flags_then_environment_then_defaults() -> None:
    env = {"PIPER_ORG_ID": "org-from-env", "PIPER_BASE_URL": "http://127.0.0.1:9", "PIPER_JUDGE_MODEL": " "}
    settings = LoadSettings.resolve({"org_id": None, "base_url": "http://127.0.0.1:1", "out_dir": "x"}, env)
    assert (settings.org_id, settings.base_url, settings.out_dir) == ("org-from-env", "http://127.0.0.1:1", Path("x"))
    assert settings.judge_model is None, "a blank variable is no setting"
    assert settings.concurrency == 16
    with pytest.raises(PiperConfigError, match="no org id"):
        LoadSettings.resolve({}, {})
    with pytest.raises(PiperConfigError, match="unknown settings: token"):
        LoadSettings.resolve({"org_id": "o", "token": "pat_x"}, {})


def test_the_settings_parameters_are_what_the_flow_receives() -> None:
    settings = LoadSettings(org_id="o", lock_timeout=2.5, http_client="httpx", max_consecutive_failures=0)
    parameters = settings.as_parameters()
    assert set(parameters) == set(inspect.signature(load_sessions.fn).parameters) - {"session_ids"}
    assert LoadSettings.resolve(parameters, {}) == settings, "a flow rebuilds exactly the CLI's settings"


SYNC_ONLY = {"full_scan": False, "since": None, "until": None}
"""`sync_sessions` parameters that are not load settings, with their defaults (prefect.yaml relies on them)."""


def test_the_sync_flow_takes_the_load_flows_parameters_but_session_ids_plus_its_own() -> None:
    load_parameters = dict(inspect.signature(load_sessions.fn).parameters)
    load_parameters.pop("session_ids")
    sync_parameters = dict(inspect.signature(sync_sessions.fn).parameters)
    assert list(sync_parameters) == [*load_parameters, *SYNC_ONLY], "same names, same order, then the sync's own"
    for name, parameter in load_parameters.items():
        assert sync_parameters[name].default == parameter.default, name
        assert sync_parameters[name].annotation == parameter.annotation, name
    assert {name: sync_parameters[name].default for name in SYNC_ONLY} == SYNC_ONLY
    assert SyncOptions().as_parameters() == SYNC_ONLY


def test_sync_takes_every_load_setting_flag_with_the_same_defaults() -> None:
    load_flags = {a.dest: a.default for a in load_parser()._actions}
    sync_flags = {a.dest: a.default for a in load_parser("sync")._actions}
    settings_dests = set(SETTINGS_FLAGS.values())
    assert {d: load_flags[d] for d in settings_dests} == {d: sync_flags[d] for d in settings_dests}
    assert set(sync_flags) - settings_dests == {"help", "engine", "since", "until", "full_scan", "dry_run"}
