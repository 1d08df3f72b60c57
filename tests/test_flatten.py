"""The pure flatten: golden files for whole outputs, a table of rejections, coercions, and a fuzz check.

Regenerate the goldens after an intended change with ``PIPER_UPDATE_GOLDEN=1 pytest tests/test_flatten.py``
and review the diff of ``tests/golden/flatten/*.expected.json`` before committing it.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from schemas.flatten import FlatRun, PayloadRejected, build_tables, flatten_run, row_columns
from schemas.tables import DATA_TABLES

GOLDEN_DIR = Path(__file__).parent / "golden" / "flatten"
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
    flat = flatten_run(payload, session_id=f"session-{case}", org_id="org-golden")
    actual = _jsonable(build_tables([flat], load_id=LOAD_ID, loaded_at=LOADED_AT))
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
        pytest.fail(f"{case}: flatten output differs from {expected_path.name}:\n" + "\n".join(diff))


def test_golden_cases_cover_the_brief() -> None:
    assert {"passed_multi_turn", "failed_stopped_early", "pending_no_turns", "drift"} <= set(GOLDEN_CASES)


def _valid() -> dict[str, Any]:
    criteria = [{"id": "crit-1", "verdict": "PASS", "input_tokens": 10, "output_tokens": 2}]
    return {
        "id": "run-1",
        "status": "passed",
        "started_at": "2026-10-07T05:00:00Z",
        "completed_at": "2026-10-07T05:01:00Z",
        "turn_results": [
            {"id": "turn-1", "turn_index": 0, "passed": True, "criteria_results": criteria},
            {"id": "turn-2", "turn_index": 1, "criteria_results": [{"id": "crit-2"}]},
        ],
    }


class _Drop:
    """Marks a field to remove instead of set."""

    def __repr__(self) -> str:
        return "<dropped>"


_DROP = _Drop()


def _targets(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    turns = payload["turn_results"]
    return {
        "run": payload,
        "turn": turns[0],
        "turn2": turns[1],
        "crit": turns[0]["criteria_results"][0],
        "crit2": turns[1]["criteria_results"][0],
    }


def _set(level: str, field: str, value: object) -> dict[str, Any]:
    """A valid payload with one field of one object (see ``_targets``) set to ``value`` or dropped."""
    payload = _valid()
    target = _targets(payload)[level]
    if value is _DROP:
        del target[field]
    else:
        target[field] = value
    return payload


def _appended(level: str, field: str, item: object) -> dict[str, Any]:
    payload = _valid()
    _targets(payload)[level][field].append(item)
    return payload


CRIT = "turn_results[0].criteria_results[0]"
REJECTIONS: list[tuple[str, object, str]] = [
    ("list", [1, 2], "payload must be an object, got a list"),
    ("string", "x", "payload must be an object, got 'x'"),
    ("int", 3, "payload must be an object, got 3"),
    ("null", None, "payload must be an object, got None"),
    ("turn not object", _appended("run", "turn_results", 7), "turn_results[2] must be an object, got 7"),
]
FIELD_REJECTIONS: list[tuple[str, str, object, str]] = [
    ("run", "id", _DROP, "id is missing"),
    ("run", "id", "", "id is empty"),
    ("run", "id", 42, "id must be a string, got 42"),
    ("run", "turn_results", {}, "turn_results must be a list, got an object"),
    ("run", "turn_results", "t", "turn_results must be a list, got 't'"),
    ("turn2", "id", _DROP, "turn_results[1].id is missing"),
    ("turn", "criteria_results", {"id": "c"}, "turn_results[0].criteria_results must be a list, got an object"),
    ("crit2", "id", _DROP, "turn_results[1].criteria_results[0].id is missing"),
    ("turn2", "id", "turn-1", "turn_results[1].id 'turn-1' is a duplicate turn result id"),
    ("crit2", "id", "crit-1", "turn_results[1].criteria_results[0].id 'crit-1' is a duplicate criteria result id"),
    ("crit", "input_tokens", "12a", f"{CRIT}.input_tokens must be an integer, got '12a'"),
    ("crit", "output_tokens", 1.5, f"{CRIT}.output_tokens must be an integer, got 1.5"),
    ("crit", "input_tokens", True, f"{CRIT}.input_tokens must be an integer, got True"),
    ("crit", "input_tokens", [1], f"{CRIT}.input_tokens must be an integer, got a list"),
    ("run", "started_at", "yesterday", "started_at is not an ISO 8601 timestamp: 'yesterday'"),
    ("run", "completed_at", 1700000000, "completed_at must be an ISO 8601 timestamp string, got 1700000000"),
    ("turn", "turn_index", 2**31, "turn_results[0].turn_index is out of range for int32: 2147483648"),
    ("turn", "turn_index", "-2147483649", "turn_results[0].turn_index is out of range for int32: '-2147483649'"),
    ("turn", "passed", "yes", "turn_results[0].passed must be a boolean, got 'yes'"),
    ("turn", "stopped_early", 2, "turn_results[0].stopped_early must be a boolean, got 2"),
    ("run", "scenario_name", 42, "scenario_name must be a string or null, got 42"),
    ("crit", "verdict", ["PASS"], f"{CRIT}.verdict must be a string or null, got a list"),
    ("crit", "critique", "ok \ud800", f"{CRIT}.critique is not valid UTF-8 text"),
]
ALL_REJECTIONS = REJECTIONS + [
    (f"{level}.{field}={value!r}", _set(level, field, value), reason)
    for level, field, value, reason in FIELD_REJECTIONS
]


@pytest.mark.parametrize(
    ("payload", "reason"), [(p, r) for _, p, r in ALL_REJECTIONS], ids=[n for n, _, _ in ALL_REJECTIONS]
)
def test_rejections_name_the_field(payload: object, reason: str) -> None:
    with pytest.raises(PayloadRejected) as caught:
        flatten_run(payload, session_id="s", org_id="o")
    assert caught.value.reason == reason
    assert str(caught.value) == reason
    assert isinstance(caught.value, ValueError)


ACCEPTED: list[tuple[str, str, object, object]] = [
    ("crit", "input_tokens", "123", 123),
    ("crit", "input_tokens", " 42 ", 42),
    ("crit", "input_tokens", "-7", None),  # implausible counts are unknown: tests/test_implausible_counts.py
    ("crit", "input_tokens", 3.0, 3),
    ("crit", "input_tokens", None, None),
    ("crit", "input_tokens", 2**63 - 1, None),
    ("crit", "verdict", "pass", "pass"),
    ("crit", "critique", "", ""),
    ("turn", "turn_index", "7", 7),
    ("turn", "turn_index", 2**31 - 1, 2**31 - 1),
    ("turn", "passed", "TRUE", True),
    ("turn", "passed", " false ", False),
    ("turn", "passed", 1, True),
    ("turn", "passed", 0, False),
    ("turn", "passed", None, None),
    ("run", "status", "cancelled", "cancelled"),
    ("run", "status", _DROP, None),
    ("run", "started_at", "2026-10-07T07:00:00+02:00", datetime(2026, 10, 7, 5, tzinfo=UTC)),
    ("run", "started_at", "2026-10-07T05:00:00", datetime(2026, 10, 7, 5, tzinfo=UTC)),
    ("run", "started_at", "2026-10-07T05:00:00.5Z", datetime(2026, 10, 7, 5, 0, 0, 500000, tzinfo=UTC)),
]


@pytest.mark.parametrize(("level", "field", "sent", "kept"), ACCEPTED)
def test_coercions(level: str, field: str, sent: object, kept: object) -> None:
    flat = flatten_run(_set(level, field, sent), session_id="s", org_id="o")
    row = {"run": flat.run, "turn": flat.turns[0], "crit": flat.criteria_results[0]}[level]
    value = row[field]
    assert value == kept and type(value) is type(kept)
    if isinstance(value, datetime):
        assert value.tzinfo is UTC


def test_derived_columns_and_token_totals() -> None:
    payload = _appended("turn2", "criteria_results", {"id": "crit-3", "verdict": "FAIL"})
    flat = flatten_run(payload, session_id="sess", org_id="org")
    assert flat.run["turn_count"] == 2 and flat.run["passed_turn_count"] == 1
    counts = ("criteria_count", "passed_criteria_count", "failed_criteria_count")
    assert [flat.run[name] for name in counts] == [3, 1, 1]
    assert (flat.run["input_tokens"], flat.run["output_tokens"], flat.run["duration_seconds"]) == (10, 2, 60.0)
    # Turn 2's criteria have no token counts at all: unknown (None), not 0.
    assert [(t["criteria_count"], t["input_tokens"]) for t in flat.turns] == [(1, 10), (2, None)]
    assert [c["turn_index"] for c in flat.criteria_results] == [0, 1, 1]
    assert {c["session_id"] for c in flat.criteria_results} == {"sess"} and flat.run["org_id"] == "org"


def test_flat_rows_have_exactly_the_table_columns() -> None:
    flat = flatten_run(_valid(), session_id="s", org_id="o")
    rows = {"runs": [flat.run], "turns": flat.turns, "criteria_results": flat.criteria_results}
    for table, table_rows in rows.items():
        assert all(tuple(row) == row_columns(table) for row in table_rows), table


def test_flatten_is_pure_and_deterministic() -> None:
    payload = _valid()
    before = copy.deepcopy(payload)
    assert flatten_run(payload, session_id="s", org_id="o") == flatten_run(payload, session_id="s", org_id="o")
    assert payload == before


def test_build_tables_schemas_and_load_columns() -> None:
    flats = [flatten_run(_valid(), session_id="s1", org_id="o"), flatten_run(_valid(), session_id="s2", org_id="o")]
    tables = build_tables(flats, load_id="L", loaded_at=datetime(2026, 11, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    assert set(tables) == set(DATA_TABLES)
    for name, table in tables.items():
        assert table.schema.equals(DATA_TABLES[name], check_metadata=True), name
        assert set(table.column("_load_id").to_pylist()) == {"L"}
        assert set(table.column("_loaded_at").to_pylist()) == {LOADED_AT}
    assert [tables[n].num_rows for n in ("runs", "turns", "criteria_results")] == [2, 4, 4]


def test_build_tables_empty_input() -> None:
    tables = build_tables([], load_id="L", loaded_at=LOADED_AT)
    for name, table in tables.items():
        assert table.num_rows == 0 and table.schema.equals(DATA_TABLES[name]), name


def test_build_tables_refuses_naive_loaded_at() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_tables([], load_id="L", loaded_at=datetime(2026, 11, 1))


_GARBAGE: list[object] = [None, True, 0, -1, 2**70, 1.5, float("nan"), "", " ", "x", "\ud800", "2026-13-01"]
_GARBAGE += [[], [None], [{"id": 1}], [{"id": "dup"}, {"id": "dup"}], {}, {"id": "x"}]


def test_fuzz_only_payload_rejected_escapes() -> None:
    """Any JSON value in any field gives a FlatRun that builds, or PayloadRejected; nothing else."""
    rng = random.Random(20261101)
    run_fields = ["id", "scenario_id", "scenario_name", "status", "started_at", "completed_at", "turn_results"]
    turn_fields = ["id", "turn_index", "passed", "stopped_early", "response_content", "criteria_results"]
    crit_fields = ["id", "criteria_id", "verdict", "critique", "evidence", "input_tokens", "output_tokens"]
    fields = {"run": run_fields, "turn": turn_fields, "turn2": turn_fields, "crit": crit_fields, "crit2": crit_fields}
    accepted: list[FlatRun] = []
    for _ in range(1500):
        payload = _valid()
        targets = _targets(payload)
        for _ in range(rng.randint(1, 3)):
            level = rng.choice(list(fields))
            targets[level][rng.choice(fields[level])] = copy.deepcopy(rng.choice(_GARBAGE))
        try:
            accepted.append(flatten_run(payload, session_id="s", org_id="o"))
        except PayloadRejected as rejected:
            assert rejected.reason
    for value in (v for v in _GARBAGE if not isinstance(v, dict)):
        with pytest.raises(PayloadRejected):
            flatten_run(value, session_id="s", org_id="o")
    assert accepted, "the fuzz should also produce acceptable payloads"
    build_tables(accepted, load_id="L", loaded_at=LOADED_AT)


@pytest.mark.parametrize(("level", "field"), [("crit", "critique"), ("crit", "evidence"), ("turn", "response_content")])
def test_utf8_checked_payloads_skip_only_the_surrogate_check(level: str, field: str) -> None:
    text = "naïve — “quoted” 😀 ok"
    payload = _set(level, field, text)
    assert flatten_run(payload, session_id="s", org_id="o", utf8_checked=True) == flatten_run(
        payload, session_id="s", org_id="o"
    )
    # What the flag vouches for is the decoder's (orjson refuses lone surrogates); without it they are rejected.
    with pytest.raises(PayloadRejected, match="is not valid UTF-8 text"):
        flatten_run(_set(level, field, "ok \ud800"), session_id="s", org_id="o")
