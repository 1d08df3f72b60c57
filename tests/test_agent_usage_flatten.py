"""The pure flatten of a session's events into `agent_usage` rows: golden files, hostile values, rejections.

Regenerate the goldens after an intended change with
``PIPER_UPDATE_GOLDEN=1 pytest tests/test_agent_usage_flatten.py`` and review the diff of
``tests/golden/agent_usage/*.expected.json`` before committing it.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.agent_usage import MAX_COST_USD, build_agent_usage_table, flatten_session_events, read_cost_usd
from schemas.coerce import PayloadRejected
from schemas.tables import AGENT_USAGE

GOLDEN_DIR = Path(__file__).parent / "golden" / "agent_usage"
GOLDEN_CASES = sorted(path.name.removesuffix(".input.json") for path in GOLDEN_DIR.glob("*.input.json"))
LOAD_ID = "load-golden"
LOADED_AT = datetime(2026, 11, 1, tzinfo=UTC)


def _dump(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()} for row in rows]


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden(case: str) -> None:
    given = json.loads((GOLDEN_DIR / f"{case}.input.json").read_text(encoding="utf-8"))
    rows = flatten_session_events(given["payload"], session_id=given["session_id"])
    table = build_agent_usage_table(rows, load_id=LOAD_ID, loaded_at=LOADED_AT)
    actual = _dump(_jsonable(table.to_pylist()))
    expected_path = GOLDEN_DIR / f"{case}.expected.json"
    if os.environ.get("PIPER_UPDATE_GOLDEN") == "1":
        expected_path.write_text(actual, encoding="utf-8")
    assert expected_path.exists(), f"no golden for {case}: run with PIPER_UPDATE_GOLDEN=1 and review it"
    expected = expected_path.read_text(encoding="utf-8")
    assert actual == expected, "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True)))


def test_golden_cases_cover_the_shapes() -> None:
    assert {"simulated", "hostile", "no_agent_runs", "null_runs"} <= set(GOLDEN_CASES)


def test_hostile_values_become_null_not_errors() -> None:
    given = json.loads((GOLDEN_DIR / "hostile.input.json").read_text(encoding="utf-8"))
    flat = flatten_session_events(given["payload"], session_id=given["session_id"])
    rows = {row["agent_run_id"]: row for row in flat}
    negative, strings, huge = rows["r-negative"], rows["r-strings"], rows["r-huge-cost"]
    assert (negative["input_tokens"], negative["output_tokens"], negative["cost_usd"], negative["requests"]) == (
        None, None, None, None)
    assert negative["created_at"] == datetime(2026, 10, 1, 10, tzinfo=UTC), "an offset is converted to UTC"
    assert (strings["input_tokens"], strings["output_tokens"], strings["cost_usd"], strings["requests"]) == (
        1200, 300, 0.0125, 3)
    assert strings["created_at"] == datetime(2026, 10, 1, 10, tzinfo=UTC), "no zone is taken as UTC"
    assert (huge["cost_usd"], huge["input_tokens"], huge["output_tokens"]) == (None, 10**12, None)
    assert rows["r-missing"]["model_name"] is None and rows["r-missing"]["cost_usd"] is None
    assert rows["r-int-cost"]["cost_usd"] == 2.0


def test_zero_agent_runs_give_the_one_row_that_says_so() -> None:
    for payload in ({"runs": []}, {"runs": None, "session": {"session_id": "s"}}):
        assert flatten_session_events(payload, session_id="s") == [{
            "agent_run_id": None, "session_id": "s", "model_name": None, "input_tokens": None,
            "output_tokens": None, "cost_usd": None, "requests": None, "created_at": None,
        }]


@pytest.mark.parametrize("value, expected", [
    (0.5, 0.5), ("1e-3", 0.001), (MAX_COST_USD, MAX_COST_USD), (MAX_COST_USD * 2, None), (-0.01, None),
    ("nan", None), ("inf", None), (10**400, None), (None, None),
])
def test_cost_readings(value: object, expected: float | None) -> None:
    assert read_cost_usd({"c": value}, "c", "runs[0]") == expected


GOOD = {"session": {"session_id": "s"}, "runs": [{"id": "a", "session_id": "s", "total_cost_usd": 0.1}]}


@pytest.mark.parametrize("change, reason", [
    (lambda p: p.pop("runs"), "runs is missing"),
    (lambda p: p.update(runs={"id": "a"}), "runs must be a list, got an object"),
    (lambda p: p["runs"].append("x"), "runs[1] must be an object, got 'x'"),
    (lambda p: p["runs"][0].pop("id"), "runs[0].id is missing"),
    (lambda p: p["runs"].append({"id": "a"}), "runs[1].id 'a' is a duplicate agent run id"),
    (lambda p: p["runs"][0].update(session_id="other"), "runs[0].session_id 'other' is not the session asked"),
    (lambda p: p["session"].update(session_id="other"), "session.session_id 'other' is not the session asked for"),
    (lambda p: p.update(session="s"), "session must be an object, got 's'"),
    (lambda p: p["runs"][0].update(total_cost_usd="free"), "runs[0].total_cost_usd must be a number, got 'free'"),
    (lambda p: p["runs"][0].update(total_cost_usd=True), "runs[0].total_cost_usd must be a number, got True"),
    (lambda p: p["runs"][0].update(total_input_tokens="many"), "runs[0].total_input_tokens must be an integer"),
    (lambda p: p["runs"][0].update(created_at="yesterday"), "runs[0].created_at is not an ISO 8601 timestamp"),
    (lambda p: p["runs"][0].update(model_name=7), "runs[0].model_name must be a string or null, got 7"),
])
def test_rejections_name_the_field(change: Any, reason: str) -> None:
    payload = copy.deepcopy(GOOD)
    change(payload)
    with pytest.raises(PayloadRejected) as raised:
        flatten_session_events(payload, session_id="s")
    assert raised.value.reason.startswith(reason)


@pytest.mark.parametrize("payload", [None, [], "runs", 3])
def test_a_payload_that_is_no_object_is_rejected(payload: object) -> None:
    with pytest.raises(PayloadRejected, match="payload must be an object"):
        flatten_session_events(payload, session_id="s")


def test_the_flatten_is_pure_and_the_table_has_exactly_the_schema() -> None:
    payload = copy.deepcopy(GOOD)
    first = flatten_session_events(payload, session_id="s")
    assert payload == GOOD and first == flatten_session_events(payload, session_id="s")
    assert build_agent_usage_table([], load_id="l", loaded_at=LOADED_AT).schema == AGENT_USAGE
    assert build_agent_usage_table(first, load_id="l", loaded_at=LOADED_AT).schema == AGENT_USAGE
    with pytest.raises(ValueError, match="timezone-aware"):
        build_agent_usage_table(first, load_id="l", loaded_at=datetime(2026, 11, 1))
