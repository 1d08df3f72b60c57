"""The merge settles current rows from `runs` for the newest load, and from the whole `fetch_log` for a late one.

Both must leave what the rule applied to the whole history leaves (warehouse/merge.py), which the
Parquet views compute from every committed version: after each case DuckDB equals the views.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.test_compact import assert_every_table_equals_duckdb, settle
from tests.test_compact_versions import T0, commit, load
from warehouse import store
from warehouse.load import open_load


def database_runs(out_dir: Path) -> list[tuple[object, ...]]:
    con = store.connect(out_dir / store.DATABASE_FILE, read_only=True)
    try:
        return con.execute("SELECT session_id, run_id FROM runs ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_the_newest_load_settles_run_ids_moving_between_sessions_as_the_whole_history(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(out, auto=False)
    load(out, [("s1", "r1"), ("s2", "r2"), ("s3", "r3")], T0, format="both")
    load(out, [("s4", "r1"), ("s2", "r5")], T0 + timedelta(minutes=1), format="both")  # r1 moves, s2's run changes
    assert database_runs(out) == [("s2", "r5"), ("s3", "r3"), ("s4", "r1")]
    # one load, one run from two sessions: the greater session's copy; s3 gets r1 back from s4
    load(out, [("s3", "r1"), ("s5", "r1")], T0 + timedelta(minutes=2), format="both")
    assert database_runs(out) == [("s2", "r5"), ("s5", "r1")]
    assert_every_table_equals_duckdb(out)


def test_a_load_merged_after_a_newer_one_loses_to_a_version_that_runs_no_longer_holds(tmp_path: Path) -> None:
    """s3's run r1 is older than s1's copy of r1, which s1's later run r2 made stale: r1 is current nowhere."""
    out = tmp_path / "out"
    settle(out, auto=False)
    late = open_load(out, format="parquet", now=T0)  # the smallest load_seq, committed last
    try:
        load(out, [("s1", "r1")], T0 + timedelta(minutes=1), format="both")
        load(out, [("s1", "r2")], T0 + timedelta(minutes=2), format="both")
        commit(late, [("s3", "r1")], T0)
    finally:
        late.close()
    load(out, [], T0 + timedelta(minutes=3), format="both")  # catches the late load up into DuckDB
    assert database_runs(out) == [("s1", "r2")]
    assert_every_table_equals_duckdb(out)
