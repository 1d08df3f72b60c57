"""Token counts out of any plausible range and negative durations: unknown (NULL), never an error or an average.

The rule (docs/analytics.md, "Implausible numbers"): a judge token count outside 0..10^12 is stored as
NULL by the flatten, so run and turn totals sum only real counts; a run that completed before it started
has a NULL duration. The views do token arithmetic in HUGEINT, so even rows stored before the rule (or
sums past BIGINT) never make a view or `piper-etl report` fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from schemas.coerce import MAX_TOKEN_COUNT
from schemas.flatten import PayloadRejected, build_tables, flatten_run
from schemas.tables import DATA_TABLES
from tests.analytics_golden import LOAD_ID, LOADED_AT
from tests.conftest import Cli, SimulatedPiper, load_args, query
from tests.views_database import views_database
from warehouse import analytics
from warehouse.reader import open_analytics

INT64_MAX = 2**63 - 1


def criterion(
    criteria_result_id: str, input_tokens: object, output_tokens: object, verdict: str = "PASS"
) -> dict[str, Any]:
    return {"id": criteria_result_id, "criteria_id": f"crit-{criteria_result_id}", "verdict": verdict,
            "criteria_question": "Is the answer right?", "critique": "Checked.",
            "input_tokens": input_tokens, "output_tokens": output_tokens}


def payload(run_id: str, *criteria: dict[str, Any], started: str = "2026-10-07T06:00:00Z",
            completed: str = "2026-10-07T06:01:00Z", status: str = "passed") -> dict[str, Any]:
    return {"id": run_id, "scenario_id": "sc-hostile", "scenario_name": "Hostile numbers", "status": status,
            "started_at": started, "completed_at": completed,
            "turn_results": [{"id": f"{run_id}-t0", "turn_index": 0, "passed": True,
                              "criteria_results": list(criteria)}]}


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (0, 0),
        (700, 700),
        ("700", 700),
        (700.0, 700),
        (MAX_TOKEN_COUNT, MAX_TOKEN_COUNT),
        (MAX_TOKEN_COUNT + 1, None),
        (str(MAX_TOKEN_COUNT + 1), None),
        (INT64_MAX, None),
        (2**63, None),
        (2**70, None),
        ("9" * 60, None),  # integer text too long to parse into any range: unknown, like any huge count
        (1e300, None),
        (-5, None),
        ("-5", None),
        (-(2**63), None),
        (None, None),
    ],
)
def test_a_count_outside_the_plausible_range_is_stored_as_unknown(sent: object, stored: int | None) -> None:
    flat = flatten_run(payload("r", criterion("c", sent, sent)), session_id="s", org_id="o")
    (row,) = flat.criteria_results
    assert (row["input_tokens"], row["output_tokens"]) == (stored, stored)
    assert (flat.run["input_tokens"], flat.turns[0]["input_tokens"]) == (stored, stored)


@pytest.mark.parametrize(("sent", "reason"), [("12a", "must be an integer, got '12a'"),
                                              (1.5, "must be an integer, got 1.5"),
                                              (True, "must be an integer, got True")])
def test_a_count_that_is_not_an_integer_is_still_rejected(sent: object, reason: str) -> None:
    with pytest.raises(PayloadRejected, match=reason):
        flatten_run(payload("r", criterion("c", sent, 1)), session_id="s", org_id="o")


def test_run_totals_sum_only_the_plausible_counts() -> None:
    flat = flatten_run(
        payload("r", criterion("c1", INT64_MAX, -5), criterion("c2", 100, 10), criterion("c3", 2**62, 2**62)),
        session_id="s", org_id="o",
    )
    assert (flat.run["input_tokens"], flat.run["output_tokens"]) == (100, 10)  # was rejected: total over int64
    assert [c["input_tokens"] for c in flat.criteria_results] == [None, 100, None]


@pytest.mark.parametrize(
    ("started", "completed", "duration"),
    [("2026-10-07T06:00:00Z", "2026-10-07T06:01:00Z", 60.0),
     ("2026-10-07T06:00:00Z", "2026-10-07T06:00:00Z", 0.0),
     ("2026-10-07T06:01:00Z", "2026-10-07T06:00:00Z", None),
     ("2026-10-07T08:00:00+02:00", "2026-10-07T06:30:00Z", 1800.0)],  # offsets compared as instants
)
def test_a_run_that_completed_before_it_started_has_no_duration(
    started: str, completed: str, duration: float | None
) -> None:
    flat = flatten_run(payload("r", started=started, completed=completed), session_id="s", org_id="o")
    assert flat.run["duration_seconds"] == duration
    assert flat.run["started_at"] is not None and flat.run["completed_at"] is not None  # both kept as sent


def stored_by_an_older_version() -> dict[str, pa.Table]:
    """Rows as a load before the rule stored them: raw extreme counts and a negative duration."""
    tables = build_tables(
        [flatten_run(payload(run_id), session_id=f"s-{run_id}", org_id="o") for run_id in ("old-1", "old-2")],
        load_id=LOAD_ID, loaded_at=LOADED_AT,
    )
    runs = tables["runs"].to_pylist()
    runs[0] |= {"input_tokens": INT64_MAX, "output_tokens": INT64_MAX, "duration_seconds": -3600.0}
    runs[1] |= {"input_tokens": INT64_MAX, "output_tokens": -5, "duration_seconds": 60.0}
    criteria = [{**row, "criteria_result_id": f"{row['run_id']}-c", "turn_result_id": f"{row['run_id']}-t0",
                 "verdict": "FAIL", "input_tokens": INT64_MAX, "output_tokens": 1}
                for row in runs]
    return {**tables, "runs": pa.Table.from_pylist(runs, schema=DATA_TABLES["runs"]),
            "criteria_results": pa.Table.from_pylist(criteria, schema=DATA_TABLES["criteria_results"])}


def test_views_over_rows_stored_before_the_rule_never_fail() -> None:
    con = views_database(stored_by_an_older_version())
    for view in analytics.VIEWS:
        con.execute(f"SELECT * FROM {view}").fetchall()
    costs = dict(con.execute("SELECT run_id, total_tokens FROM run_costs").fetchall())
    assert costs == {"old-1": None, "old-2": INT64_MAX - 5}  # NULL: the sum does not fit BIGINT
    summary = con.execute(
        "SELECT input_tokens, mean_duration_seconds, p95_duration_seconds FROM scenario_summary"
    ).fetchone()
    assert summary == (None, 60.0, 60.0)  # the negative duration is not averaged; the sum is past BIGINT
    assert con.execute("SELECT input_tokens FROM criteria_summary").fetchall() == [(None,)]


HOSTILE = {
    "huge": payload("run-huge", criterion("huge-c1", INT64_MAX, 10, "FAIL"), criterion("huge-c2", 100, INT64_MAX)),
    "negative": payload("run-negative", criterion("negative-c1", -5, -5), criterion("negative-c2", 40, 4)),
    "backwards": payload("run-backwards", criterion("backwards-c1", 7, 1),
                         started="2026-10-07T07:00:00Z", completed="2026-10-07T06:00:00Z"),
}


@pytest.fixture
def hostile_out(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> Path:
    sessions = piper.dataset.session_ids[:3]
    for session_id, body in zip(sessions, HOSTILE.values(), strict=True):
        piper.dataset.set_payload(session_id, body)
    result = cli(*load_args(piper, out_dir, *sessions))
    assert result.code == 0, result.stderr
    return out_dir


def test_a_load_of_hostile_numbers_keeps_every_view_and_the_report_working(hostile_out: Path, cli: Cli) -> None:
    totals = {"run-huge": (100, 10), "run-negative": (40, 4), "run-backwards": (7, 1)}
    stored = query(hostile_out, "SELECT run_id, input_tokens, output_tokens FROM runs")
    assert {run_id: (tokens_in, tokens_out) for run_id, tokens_in, tokens_out in stored} == totals
    assert query(hostile_out, "SELECT count(*) FROM criteria_results WHERE input_tokens IS NULL") == [(2,)]
    for view in analytics.VIEWS:
        query(hostile_out, f"SELECT * FROM {view}")  # inside piper.duckdb
        result = cli("sql", "--out", str(hostile_out), "--csv", f"SELECT * FROM {view}")  # over the Parquet files
        assert result.code == 0, (view, result.stderr)
    reader = open_analytics(hostile_out)
    try:
        row = reader.con.execute(
            "SELECT runs, input_tokens, output_tokens, mean_duration_seconds, p95_duration_seconds "
            "FROM scenario_summary"
        ).fetchone()
        assert row == (3, 147, 15, 60.0, 60.0)  # run-backwards has no duration: not averaged as a real one
        assert reader.con.execute("SELECT duration_seconds FROM run_costs WHERE run_id = 'run-backwards'").fetchall() \
            == [(None,)]
    finally:
        reader.close()
    report = cli("report", "--out", str(hostile_out))
    assert report.code == 0, report.stderr
    assert "3 runs, 3 final" in report.stdout and (hostile_out / "report.html").is_file()
