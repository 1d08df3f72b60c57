"""The pure flatten of scenario payloads (golden files, rejections) and the session info of a run's row.

Regenerate the goldens after an intended change with
``PIPER_UPDATE_GOLDEN=1 pytest tests/test_dimensions_flatten.py`` and review the diff of
``tests/golden/scenarios/*.expected.json`` before committing it.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from schemas.flatten import SessionInfo, build_tables, flatten_run
from schemas.scenarios import (
    ListedScenario,
    PayloadRejected,
    build_scenario_tables,
    flatten_scenario,
    read_listed_scenario,
)
from schemas.tables import SCENARIO_CRITERIA, SCENARIOS

GOLDEN_DIR = Path(__file__).parent / "golden" / "scenarios"
GOLDEN_CASES = sorted(path.name.removesuffix(".input.json") for path in GOLDEN_DIR.glob("*.input.json"))
LOAD_ID = "load-golden"
LOADED_AT = datetime(2026, 11, 1, tzinfo=UTC)


def _jsonable(tables: dict[str, pa.Table]) -> dict[str, list[dict[str, Any]]]:
    def cell(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    return {name: [{k: cell(v) for k, v in row.items()} for row in table.to_pylist()] for name, table in tables.items()}


def _dump(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden(case: str) -> None:
    payload = json.loads((GOLDEN_DIR / f"{case}.input.json").read_text(encoding="utf-8"))
    flat = flatten_scenario(payload, scenario_id=payload["id"])
    actual = _jsonable(build_scenario_tables([flat], load_id=LOAD_ID, loaded_at=LOADED_AT))
    expected_path = GOLDEN_DIR / f"{case}.expected.json"
    if os.environ.get("PIPER_UPDATE_GOLDEN") == "1":
        expected_path.write_text(_dump(actual), encoding="utf-8")
        return
    assert expected_path.exists(), f"no golden for {case}: run with PIPER_UPDATE_GOLDEN=1 and review it"
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    if actual != expected:
        diff = difflib.unified_diff(
            _dump(expected).splitlines(), _dump(actual).splitlines(), "expected", "actual", lineterm=""
        )
        pytest.fail(f"{case}: scenario flatten output differs from {expected_path.name}:\n" + "\n".join(diff))


def test_golden_cases_cover_the_shapes() -> None:
    assert {"simulated", "drift", "no_turns"} <= set(GOLDEN_CASES)


def _detail() -> dict[str, Any]:
    return {
        "id": "sc-1", "name": "Refund", "tags": ["billing"], "updated_at": "2026-10-01T00:00:00Z",
        "turns": [{"id": "t-1", "order_index": 0, "required": True,
                   "criteria": [{"id": "c-1", "question": "Q?"}, {"id": "c-2"}]}],
    }


def _changed(change: str) -> dict[str, Any]:
    detail = _detail()
    turn = detail["turns"][0]
    match change:
        case "other id":
            detail["id"] = "sc-2"
        case "duplicate criterion":
            turn["criteria"][1]["id"] = "c-1"
        case "tag not a string":
            detail["tags"] = ["billing", 3]
        case "tag null":
            detail["tags"] = [None]
        case "tags not a list":
            detail["tags"] = "billing"
        case "turns not a list":
            detail["turns"] = {"id": "t-1"}
        case "criterion without id":
            del turn["criteria"][0]["id"]
        case "turn without id":
            del turn["id"]
        case "bad timestamp":
            detail["updated_at"] = "yesterday"
        case "bad required":
            turn["required"] = "maybe"
    return detail


@pytest.mark.parametrize(("change", "reason"), [
    ("other id", "id 'sc-2' is not the scenario asked for ('sc-1')"),
    ("duplicate criterion", "turns[0].criteria[1].id 'c-1' is a duplicate criteria id"),
    ("tag not a string", "tags[1] must be a string or null, got 3"),
    ("tag null", "tags[0] must be a string, got None"),
    ("tags not a list", "tags must be a list, got 'billing'"),
    ("turns not a list", "turns must be a list, got an object"),
    ("criterion without id", "turns[0].criteria[0].id is missing"),
    ("turn without id", "turns[0].id is missing"),
    ("bad timestamp", "updated_at is not an ISO 8601 timestamp: 'yesterday'"),
    ("bad required", "turns[0].required must be a boolean, got 'maybe'"),
])
def test_rejections_name_the_field(change: str, reason: str) -> None:
    with pytest.raises(PayloadRejected) as caught:
        flatten_scenario(_changed(change), scenario_id="sc-1")
    assert caught.value.reason == reason


@pytest.mark.parametrize("payload", [None, [], "x", 3])
def test_a_payload_that_is_no_object_is_rejected(payload: object) -> None:
    with pytest.raises(PayloadRejected, match=r"^payload must be an object"):
        flatten_scenario(payload, scenario_id="sc-1")


def test_flatten_is_pure() -> None:
    detail = _detail()
    before = copy.deepcopy(detail)
    assert flatten_scenario(detail, scenario_id="sc-1") == flatten_scenario(detail, scenario_id="sc-1")
    assert detail == before


def test_tables_have_exactly_the_schemas_even_when_empty() -> None:
    tables = build_scenario_tables([], load_id=LOAD_ID, loaded_at=LOADED_AT)
    assert tables["scenarios"].schema == SCENARIOS and tables["scenario_criteria"].schema == SCENARIO_CRITERIA
    with pytest.raises(ValueError, match="timezone-aware"):
        build_scenario_tables([], load_id=LOAD_ID, loaded_at=datetime(2026, 11, 1))


def test_listed_scenarios() -> None:
    item = {"id": "sc-1", "updated_at": "2026-10-01T02:00:00+02:00", "last_run": None, "turn_count": 3}
    assert read_listed_scenario(item, "scenarios[4]") == ListedScenario("sc-1", datetime(2026, 10, 1, tzinfo=UTC))
    assert read_listed_scenario({"id": "sc-1"}, "scenarios[0]").updated_at is None
    with pytest.raises(PayloadRejected, match=r"^scenarios\[2\]\.id is missing$"):
        read_listed_scenario({"name": "x"}, "scenarios[2]")
    with pytest.raises(PayloadRejected, match=r"^scenarios\[2\] must be an object"):
        read_listed_scenario("sc-1", "scenarios[2]")


RUN = {"id": "run-1", "scenario_id": "sc-1", "status": "passed", "turn_results": []}


def test_a_listed_session_fills_the_agent_columns_of_its_run() -> None:
    info = SessionInfo(agent_id="agent-1", agent_name="Billing Bot", is_test=True)
    flat = flatten_run(RUN, session_id="s-1", org_id="o", session=info)
    runs = build_tables([flat], load_id=LOAD_ID, loaded_at=LOADED_AT)["runs"].to_pylist()
    assert [(r["agent_id"], r["agent_name"], r["is_test"]) for r in runs] == [("agent-1", "Billing Bot", True)]


def test_a_session_never_listed_leaves_them_null() -> None:
    runs = build_tables([flatten_run(RUN, session_id="s-1", org_id="o")], load_id=LOAD_ID,
                        loaded_at=LOADED_AT)["runs"].to_pylist()
    assert [(r["agent_id"], r["agent_name"], r["is_test"]) for r in runs] == [(None, None, None)]


def test_session_info_from_a_sessions_row_keeps_only_values_of_the_right_type() -> None:
    row = {"session_id": "s-1", "agent_id": "agent-1", "agent_name": 7, "is_test": False, "channel_id": "c"}
    assert SessionInfo.from_row(row) == SessionInfo("agent-1", None, False)
    assert SessionInfo.from_row({"is_test": "true"}) == SessionInfo()
