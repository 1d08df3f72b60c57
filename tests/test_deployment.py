"""prefect.yaml declares the flow's deployment with every parameter, and no token among them."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml

from flows.prefect_flow import load_sessions

ROOT = Path(__file__).resolve().parents[1]


def test_deployment_matches_the_flow_signature() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    (deployment,) = config["deployments"]
    path, name = deployment["entrypoint"].split(":")
    assert (ROOT / path).exists() and name == load_sessions.fn.__name__
    signature = inspect.signature(load_sessions.fn)
    assert set(deployment["parameters"]) == set(signature.parameters)
    for parameter, value in deployment["parameters"].items():
        default = signature.parameters[parameter].default
        if default is not inspect.Parameter.empty:
            assert value == default, parameter
    assert not any("token" in p for p in deployment["parameters"])


def test_every_parameter_is_documented_in_the_flow_docstring() -> None:
    doc = load_sessions.fn.__doc__ or ""
    for parameter in inspect.signature(load_sessions.fn).parameters:
        assert f"{parameter}:" in doc, parameter
