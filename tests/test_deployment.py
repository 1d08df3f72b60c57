"""prefect.yaml declares four deployments that import, match their flow's signature and schedule as documented."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEPLOYMENTS = {d["name"]: d for d in CONFIG["deployments"]}

EXPECTED = {  # deployment: (flow, schedule on?, parameters whose value is not the flow's default)
    "hourly": ("sync_sessions", True, {}),
    "daily-full-scan": ("sync_sessions", True, {"full_scan": True}),
    "backfill": ("sync_sessions", False, {"full_scan": True}),
    "ad-hoc": ("load_sessions", False, {}),
}
ALL = list(EXPECTED)


def flow_of(deployment: dict[str, Any]) -> Any:
    """The flow a deployment's module-path entrypoint names, imported as a worker imports it."""
    module, _, attribute = deployment["entrypoint"].rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def test_the_four_deployments_are_declared() -> None:
    assert set(DEPLOYMENTS) == set(EXPECTED)
    for name, deployment in DEPLOYMENTS.items():
        assert deployment["entrypoint"] == f"flows.prefect_flow.{EXPECTED[name][0]}", name


@pytest.mark.parametrize("name", ALL)
def test_entrypoint_imports_from_the_installed_package_and_names_its_flow(name: str) -> None:
    flow = flow_of(DEPLOYMENTS[name])
    assert flow.name == EXPECTED[name][0], "Prefect names a flow by its function: README's 'flow/deployment'"


@pytest.mark.parametrize("name", ALL)
def test_parameters_are_the_flow_defaults_but_the_deployment_own(name: str) -> None:
    parameters = DEPLOYMENTS[name]["parameters"]
    signature = inspect.signature(flow_of(DEPLOYMENTS[name]).fn).parameters
    assert set(parameters) <= set(signature), "a parameter the flow does not take"
    overrides = EXPECTED[name][2]
    for parameter, spec in signature.items():
        if spec.default is inspect.Parameter.empty:  # what to load: given per run, never frozen in the file
            assert parameter not in parameters, parameter
            continue
        assert parameter in parameters, f"{parameter} is not documented in prefect.yaml"
        assert parameters[parameter] == overrides.get(parameter, spec.default), parameter
    assert not any("token" in p for p in parameters)


@pytest.mark.parametrize("name", ALL)
def test_every_parameter_is_documented_in_the_flow_docstring(name: str) -> None:
    flow = flow_of(DEPLOYMENTS[name])
    doc = flow.fn.__doc__ or ""
    for parameter in inspect.signature(flow.fn).parameters:
        assert f"{parameter}:" in doc, parameter


@pytest.mark.parametrize("name", list(EXPECTED))
def test_schedules_parse_and_are_on_where_promised(name: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    schedules = DEPLOYMENTS[name].get("schedules") or []
    assert bool(schedules) == EXPECTED[name][1]
    for schedule in schedules:
        assert schedule["active"] is True
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises on a bad expression


def test_hourly_and_daily_schedules_say_what_their_names_say() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    hourly = CronSchedule(cron=DEPLOYMENTS["hourly"]["schedules"][0]["cron"], timezone="UTC")
    daily = CronSchedule(cron=DEPLOYMENTS["daily-full-scan"]["schedules"][0]["cron"], timezone="UTC")
    assert hourly.cron.split()[1:] == ["*", "*", "*", "*"]
    assert daily.cron.split()[2:] == ["*", "*", "*"] and "*" not in daily.cron.split()[:2]


def test_the_flow_code_is_the_installed_package_and_no_undocumented_variable_is_needed() -> None:
    assert CONFIG["pull"] == [], "no pull step: a worker imports the installed package from any folder"
    text = (ROOT / "prefect.yaml").read_text(encoding="utf-8")
    for variable in re.findall(r"\{\{\s*\$(\w+)", text):
        assert f"`{variable}`" in README, f"prefect.yaml needs {variable}, which the README does not name"


def test_the_work_pool_is_the_one_the_readme_creates() -> None:
    pools = {d["work_pool"]["name"] for d in DEPLOYMENTS.values()}
    assert len(pools) == 1
    (pool,) = pools
    assert f"prefect work-pool create {pool} --type process" in README
    assert f"prefect worker start --pool {pool}" in README


def test_the_readme_runs_deployments_that_exist() -> None:
    runs = re.findall(r"prefect deployment run '([^']+)'", README)
    assert runs, "the README triggers a run"
    declared = {f"{EXPECTED[name][0]}/{name}" for name in DEPLOYMENTS}
    assert set(runs) <= declared
    assert "sync_sessions/hourly" in runs and "load_sessions/ad-hoc" in runs
