"""The compacted run-version index decides current rows as the whole history would, across compactions.

Loads here land Arrow tables through the load transaction (no HTTP), so that each case can set exactly
which session returns which run id, and in which order loads begin and commit.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from schemas.tables import CRITERIA_RESULTS, FETCH_LOG, RUNS, TURNS
from tests.test_compact import assert_every_table_equals_duckdb, contents, settle
from tests.test_compact_crash import sql_file_contents
from warehouse import compact, compacted, views
from warehouse.load import LoadTransaction, OutputFormat, open_load
from warehouse.records import LoadCounts

T0 = datetime(2026, 11, 1, tzinfo=UTC)
Version = tuple[str, str]  # (session_id, run_id) as one load fetched it


def data_tables(load_id: str, versions: list[Version], at: datetime) -> dict[str, pa.Table]:
    """A run of one turn and two criteria per version; ids depend on the load, so each copy is told apart."""
    runs, turns, criteria, log = [], [], [], []
    for session_id, run_id in versions:
        turn = f"t-{run_id}-{load_id[-6:]}"
        runs.append({"run_id": run_id, "session_id": session_id, "org_id": "org", "status": "passed",
                     "turn_count": 1, "passed_turn_count": 1, "criteria_count": 2, "passed_criteria_count": 1,
                     "failed_criteria_count": 1, "_load_id": load_id, "_loaded_at": at})
        turns.append({"turn_result_id": turn, "run_id": run_id, "session_id": session_id, "turn_index": 0,
                      "criteria_count": 2, "passed_criteria_count": 1, "_load_id": load_id, "_loaded_at": at})
        criteria += [{"criteria_result_id": f"{turn}-{verdict}", "turn_result_id": turn, "run_id": run_id,
                      "session_id": session_id, "turn_index": 0, "verdict": verdict, "_load_id": load_id,
                      "_loaded_at": at} for verdict in ("PASS", "FAIL")]
        log.append({"load_id": load_id, "session_id": session_id, "outcome": "loaded", "attempts": 1,
                    "run_id": run_id, "fetched_at": at})
    return {"runs": pa.Table.from_pylist(runs, schema=RUNS), "turns": pa.Table.from_pylist(turns, schema=TURNS),
            "criteria_results": pa.Table.from_pylist(criteria, schema=CRITERIA_RESULTS),
            "fetch_log": pa.Table.from_pylist(log, schema=FETCH_LOG)}


def commit(load: LoadTransaction, versions: list[Version], at: datetime) -> str:
    load.land("main-0001", data_tables(load.load_id, versions, at))
    load.commit("succeeded", LoadCounts(), {})
    return load.load_id


def load(out_dir: Path, versions: list[Version], at: datetime, format: OutputFormat = "parquet") -> str:
    with open_load(out_dir, format=format, now=at) as running:
        return commit(running, versions, at)


def current_runs(out_dir: Path) -> list[tuple[object, ...]]:
    con = views.open_current_state(out_dir / "parquet")
    try:
        return con.execute("SELECT session_id, run_id FROM runs ORDER BY ALL").fetchall()
    finally:
        con.close()


def assert_everywhere_alike(out_dir: Path, at: datetime) -> None:
    """DuckDB (caught up by a load that writes it), the views and `current_state.sql` hold the same rows."""
    load(out_dir, [], at, format="both")
    assert_every_table_equals_duckdb(out_dir)
    assert contents(out_dir) == sql_file_contents(out_dir)


@pytest.mark.parametrize("keep_superseded", [False, True])
def test_versions_superseding_compacted_ones_in_any_order(tmp_path: Path, keep_superseded: bool) -> None:
    out = tmp_path / "out"
    settle(out, auto=False, keep_superseded=keep_superseded, grace_seconds=0)
    load(out, [(f"s{n}", f"r{n}") for n in range(1, 7)], T0)
    compact.compact(out)
    # B begins before C (a smaller load_seq) but commits after C has been compacted.
    older = open_load(out, format="parquet", now=T0 + timedelta(minutes=1))
    try:
        load(out, [("s2", "r2"), ("s7", "r1")], T0 + timedelta(minutes=2))  # s7 now reports run r1 too
        compact.compact(out)
        commit(older, [("s1", "r1"), ("s3", "r3")], T0 + timedelta(minutes=1))
    finally:
        older.close()
    # r1: s7's copy from the newest load wins; s1's newer-looking refetch lost to it (older load_seq).
    expected = [("s2", "r2"), ("s3", "r3"), ("s4", "r4"), ("s5", "r5"), ("s6", "r6"), ("s7", "r1")]
    assert current_runs(out) == expected, "pending versions against the index"
    load(out, [("s4", "r9")], T0 + timedelta(minutes=3))  # s4's run id changed: r4 is gone
    expected = [("s2", "r2"), ("s3", "r3"), ("s4", "r9"), ("s5", "r5"), ("s6", "r6"), ("s7", "r1")]
    assert current_runs(out) == expected
    compact.compact(out)
    assert current_runs(out) == expected, "after the index took the late load in"
    assert_everywhere_alike(out, T0 + timedelta(minutes=4))
    load(out, [("s1", "r1"), ("s5", "r5")], T0 + timedelta(minutes=5))  # s1 wins r1 back, newest now
    compact.compact(out)
    assert current_runs(out)[0] == ("s1", "r1") and ("s7", "r1") not in current_runs(out)
    assert_everywhere_alike(out, T0 + timedelta(minutes=6))
    index = compacted.read_manifest(out / "parquet").table_files(compacted.VERSIONS)
    assert index and compacted.read_manifest(out / "parquet").indexed


def test_a_manifest_from_before_the_index_reads_alike_and_the_next_compaction_indexes_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(out, auto=False, grace_seconds=0)
    load(out, [(f"s{n}", f"r{n}") for n in range(1, 5)], T0)
    load(out, [("s1", "r1"), ("s2", "r7")], T0 + timedelta(minutes=1))
    compact.compact(out)
    before = contents(out)
    root = out / "parquet"
    manifest = json.loads(compacted.manifest_path(root).read_text(encoding="utf-8"))
    manifest["format"] = 1
    del manifest["indexed"]
    del manifest["files"][compacted.VERSIONS]
    compacted.manifest_path(root).write_text(json.dumps(manifest), encoding="utf-8")  # as piper-etl wrote it then
    assert not compacted.read_manifest(root).index_complete
    assert contents(out) == before, "the views rank the compacted fetch_log instead"
    load(out, [("s3", "r3")], T0 + timedelta(minutes=2))
    after = contents(out)
    compact.compact(out)
    assert compacted.read_manifest(root).indexed
    assert contents(out) == after
    assert_everywhere_alike(out, T0 + timedelta(minutes=3))
