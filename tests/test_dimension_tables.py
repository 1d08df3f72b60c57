"""Dimension tables keep, per key, the rows of the newest committed load; history tables keep every row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from schemas.tables import SCENARIO_CRITERIA, SESSIONS, SYNC_STATE
from warehouse import store, views
from warehouse.load import LoadTransaction, OutputFormat, open_load
from warehouse.records import LoadCounts

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def session(session_id: str, agent: str, load_id: str, at: datetime) -> dict[str, object]:
    return {"session_id": session_id, "agent_id": agent, "agent_name": agent.title(), "is_test": False,
            "scenario_run_status": "passed", "created_at": T0, "updated_at": at, "_load_id": load_id,
            "_loaded_at": at}


def criterion(criteria_id: str, scenario_id: str, load_id: str, at: datetime) -> dict[str, object]:
    return {"criteria_id": criteria_id, "scenario_id": scenario_id, "question": f"{criteria_id}?",
            "required": True, "_load_id": load_id, "_loaded_at": at}


def sync_row(load_id: str, at: datetime) -> dict[str, object]:
    return {"load_id": load_id, "started_at": at, "finished_at": at, "status": "succeeded",
            "watermark_before": None, "watermark_after": at, "pages_read": 1, "sessions_listed": 2,
            "sessions_queued": 2, "full_scan": False}


def land_load(out: Path, format: OutputFormat, sessions: list[tuple[str, str]], criteria: list[tuple[str, str]],
              now: datetime) -> str:
    with open_load(out, format=format, now=now) as load:
        return land(load, sessions, criteria, now)


def stores_of(out: Path, format: OutputFormat) -> list[duckdb.DuckDBPyConnection]:
    cons = []
    if format in ("duckdb", "both"):
        cons.append(store.connect(out / store.DATABASE_FILE, read_only=True))
    if format in ("parquet", "both"):
        cons.append(views.open_current_state(out / "parquet"))
    return cons


@pytest.mark.parametrize("format", ["duckdb", "parquet", "both"])
def test_newest_load_replaces_a_keys_rows_and_history_keeps_every_sync(tmp_path: Path, format: OutputFormat) -> None:
    first = land_load(tmp_path, format, [("s1", "agent-a"), ("s2", "agent-a")],
                      [("c1", "sc1"), ("c2", "sc1"), ("c3", "sc1"), ("c9", "sc2")], T0)
    second = land_load(tmp_path, format, [("s2", "agent-b")], [("c1", "sc1"), ("c4", "sc1")],
                       T0 + timedelta(hours=1))
    for con in stores_of(tmp_path, format):
        try:
            assert con.execute("SELECT session_id, agent_id, _load_id FROM sessions ORDER BY 1").fetchall() == [
                ("s1", "agent-a", first), ("s2", "agent-b", second)]
            # A re-fetched scenario replaces all of its criteria (c2 and c3 are gone); other scenarios stay.
            assert con.execute("SELECT scenario_id, criteria_id FROM scenario_criteria ORDER BY 1, 2").fetchall() == [
                ("sc1", "c1"), ("sc1", "c4"), ("sc2", "c9")]
            assert con.execute("SELECT load_id FROM sync_state ORDER BY started_at").fetchall() == [
                (first,), (second,)]
        finally:
            con.close()


def land(load: LoadTransaction, sessions: list[tuple[str, str]], criteria: list[tuple[str, str]], now: datetime) -> str:
    lid = load.load_id
    load.land("main-0001", {
        "sessions": pa.Table.from_pylist([session(s, a, lid, now) for s, a in sessions], schema=SESSIONS),
        "scenario_criteria": pa.Table.from_pylist([criterion(c, sc, lid, now) for c, sc in criteria],
                                                  schema=SCENARIO_CRITERIA),
        "sync_state": pa.Table.from_pylist([sync_row(lid, now)], schema=SYNC_STATE),
    })
    load.commit("succeeded", LoadCounts(), {})
    return lid


def test_a_load_merged_after_a_newer_one_does_not_replace_its_dimension_rows(tmp_path: Path) -> None:
    """The older load commits (Parquet only) after the newer one merged; DuckDB catches up with it later."""
    older_load = open_load(tmp_path, format="parquet", now=T0)
    newer = land(open_load(tmp_path, format="both", now=T0 + timedelta(hours=1)),
                 [("s1", "agent-new")], [("c3", "sc1")], T0 + timedelta(hours=1))
    older = land(older_load, [("s1", "agent-old")], [("c1", "sc1"), ("c2", "sc1")], T0)
    land_load(tmp_path, "both", [("s9", "agent-z")], [], T0 + timedelta(hours=2))  # catches DuckDB up
    for con in stores_of(tmp_path, "both"):
        try:
            assert con.execute("SELECT agent_id, _load_id FROM sessions WHERE session_id = 's1'").fetchall() == [
                ("agent-new", newer)]
            assert con.execute("SELECT criteria_id FROM scenario_criteria").fetchall() == [("c3",)]
            assert con.execute("SELECT count(*) FROM sync_state WHERE load_id IN (?, ?)", [older, newer]).fetchone() \
                == (2,)
        finally:
            con.close()
