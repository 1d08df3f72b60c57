"""Property-based: the flatten never raises anything but a rejection, and accepted payloads round-trip."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.flatten import FlatRun, PayloadRejected, build_tables, flatten_run

LOADED_AT = datetime(2026, 11, 1, tzinfo=UTC)
# Reproducible in CI, no timing limits (the first example pays for imports), no example database on disk.
STABLE = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)

# Values a drifting API might send for a field: right, wrong, missing-ish, or odd.
field_value = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.sampled_from(["PASS", "FAIL", "SKIPPED", "123", " 42 ", "12a", "true", "2026-11-01T10:00:00Z",
                     "2026-11-01T10:00:00", "2026-11-01T12:00:00+02:00", "yesterday", ""]),
)
ids = st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=8), st.none(), st.integers())


def criterion() -> st.SearchStrategy[dict[str, Any]]:
    keys = ["criteria_id", "verdict", "criteria_question", "criteria_type", "critique", "evidence",
            "input_tokens", "output_tokens", "brand_new_field"]
    return st.fixed_dictionaries({"id": ids}, optional=dict.fromkeys(keys, field_value))


def turn() -> st.SearchStrategy[dict[str, Any]]:
    keys = ["turn_index", "stopped_early", "passed", "response_content"]
    return st.fixed_dictionaries(
        {"id": ids, "criteria_results": st.one_of(st.none(), st.lists(criterion(), max_size=4))},
        optional=dict.fromkeys(keys, field_value),
    )


run_payloads = st.fixed_dictionaries(
    {"id": ids, "turn_results": st.one_of(st.none(), st.lists(turn(), max_size=4), field_value)},
    optional=dict.fromkeys(
        ["scenario_id", "scenario_name", "status", "started_at", "completed_at", "cost_summary"], field_value
    ),
)


def flatten_or_reject(payload: object) -> FlatRun | None:
    try:
        return flatten_run(payload, session_id="s-1", org_id="org-1")
    except PayloadRejected as exc:
        assert exc.reason, "a rejection always says why"
        return None


@settings(STABLE, max_examples=300)
@given(json_values)
def test_arbitrary_json_is_flattened_or_rejected(payload: object) -> None:
    flat = flatten_or_reject(payload)
    if flat is not None:
        build_tables([flat], load_id="load", loaded_at=LOADED_AT)


@settings(STABLE, max_examples=400)
@given(run_payloads)
def test_accepted_payloads_round_trip_ids_and_counts(payload: dict[str, Any]) -> None:
    flat = flatten_or_reject(payload)
    if flat is None:
        return
    turns = payload.get("turn_results") or []
    criteria = [c for t in turns for c in (t.get("criteria_results") or [])]
    assert flat.run["run_id"] == payload["id"]
    assert [t["turn_result_id"] for t in flat.turns] == [t["id"] for t in turns]
    assert [c["criteria_result_id"] for c in flat.criteria_results] == [c["id"] for c in criteria]
    assert flat.run["turn_count"] == len(turns) and flat.run["criteria_count"] == len(criteria)
    assert flat.run["passed_criteria_count"] == sum(c.get("verdict") == "PASS" for c in criteria)
    assert flat.run["failed_criteria_count"] == sum(c.get("verdict") == "FAIL" for c in criteria)
    tables = build_tables([flat], load_id="load", loaded_at=LOADED_AT)
    assert (tables["runs"].num_rows, tables["turns"].num_rows, tables["criteria_results"].num_rows) == (
        1, len(turns), len(criteria)
    )
    for timestamp in (flat.run["started_at"], flat.run["completed_at"]):
        assert timestamp is None or timestamp.utcoffset().total_seconds() == 0
