"""Readers of the Parquet views see the state before or after a compaction, never a mixture or a missing file."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb

from tests.conftest import Cli, SimulatedPiper, load_args
from tests.test_compact import contents, settle
from tests.test_compact_crash import sql_file_contents
from warehouse import compact, compacted, landing, views
from warehouse.ddl import ALL_TABLES
from warehouse.load import open_load


def read_all(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in ALL_TABLES}


def test_a_reader_holding_older_views_reads_them_until_the_grace_period_ends(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    settle(out_dir, auto=False, grace_seconds=600)
    ids = piper.dataset.session_ids
    for batch in (ids[:10], ids[5:20], ids[:3]):
        assert cli(*load_args(piper, out_dir, "--format", "parquet", "--refetch", *batch)).code == 0
    before = contents(out_dir)
    old_sql = (out_dir / "current_state.sql").read_text(encoding="utf-8")
    holding = views.open_current_state(out_dir / "parquet")
    try:
        compacted_at = time.time()
        compact.compact(out_dir)
        assert (out_dir / "current_state.sql").read_text(encoding="utf-8") != old_sql
        assert read_all(holding) == before, "views opened before the compaction still read their files"
        stale = duckdb.connect()
        stale.execute(f"SET file_search_path = '{out_dir}'")
        stale.execute(old_sql)
        assert read_all(stale) == before, "an SQL file read before the compaction still works"
        stale.close()
        assert contents(out_dir) == before == sql_file_contents(out_dir)
        # Within the grace period nothing is deleted; past it, what the compaction replaced goes.
        assert compact.compact(out_dir, now=compacted_at + 599).files_deleted == 0
        done = compact.compact(out_dir, now=time.time() + 601)
        assert done.files_deleted > 0
        manifest = compacted.read_manifest(out_dir / "parquet")
        assert manifest.retired_files == () and manifest.retired_loads == ()
        assert not list((out_dir / "parquet" / "runs").glob("*.parquet"))
        assert contents(out_dir) == before
    finally:
        holding.close()


def test_readers_during_loads_and_compactions_never_see_a_mixture(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    settle(out_dir, grace_seconds=60)
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, "--format", "parquet", *ids[:2])).code == 0
    stop, problems, reads = threading.Event(), list[str](), [0]

    def read_repeatedly() -> None:
        seen_loads = 0
        while not stop.is_set():
            try:
                con = views.open_current_state(out_dir / "parquet")
                try:
                    runs, distinct, loads, logged = con.execute(
                        "SELECT (SELECT count(*) FROM runs), (SELECT count(DISTINCT run_id) FROM runs), "
                        "(SELECT count(*) FROM loads), (SELECT count(DISTINCT load_id) FROM fetch_log)").fetchone()
                finally:
                    con.close()
            except duckdb.Error as exc:
                problems.append(repr(exc))
                continue
            if runs != distinct or loads != logged or loads < seen_loads:
                problems.append(f"runs {runs}/{distinct} distinct, loads {loads}, logged {logged}, seen {seen_loads}")
            seen_loads = loads
            reads[0] += 1

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    try:
        for index in range(2, 14):
            assert cli(*load_args(piper, out_dir, "--format", "parquet", "--refetch", *ids[index:index + 3])).code == 0
            if index % 4 == 0:
                compact.compact(out_dir)
    finally:
        stop.set()
        reader.join()
    assert problems == []
    assert reads[0] > 10
    assert compacted.read_manifest(out_dir / "parquet").generation >= 3


def test_the_views_never_name_a_part_of_a_load_that_has_not_committed(tmp_path: Path) -> None:
    """So that recovery deleting a dead load's incomplete chunk cannot break a query (a glob once saw them)."""
    import pyarrow as pa

    from schemas.tables import RUNS

    out_dir = tmp_path / "out"
    running = open_load(out_dir, format="parquet")
    try:
        landing.write_part(pa.Table.from_pylist([], schema=RUNS), landing.part_path(
            out_dir / "parquet", "runs", running.load_id, "main-0001"))
        layout = views.read_layout(out_dir / "parquet")
        assert layout.tables() == set()
        sql = views.current_state_sql((out_dir / "parquet").as_posix(), layout)
        assert running.load_id not in sql
        con = views.open_current_state(out_dir / "parquet")
        landing.remove_load(out_dir / "parquet", running.load_id)  # what recovery does with an incomplete chunk
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        con.close()
    finally:
        running.close()


def test_a_session_that_reads_current_state_sql_again_sees_the_newer_state(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    """The file's TEMP tables (which versions are current) are replaced when it is read again in the same
    DuckDB session, after loads that supersede compacted rows and a compaction: no state is left behind."""
    settle(out_dir, auto=False)
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, "--format", "parquet", *ids[:8])).code == 0
    session = duckdb.connect()
    try:
        session.execute(f"SET file_search_path = '{out_dir}'")
        session.execute((out_dir / "current_state.sql").read_text(encoding="utf-8"))
        first = read_all(session)
        compact.compact(out_dir)
        piper.dataset.complete_pending()
        assert cli(*load_args(piper, out_dir, "--format", "parquet", "--refetch", *ids[:5])).code == 0
        assert views.read_layout(out_dir / "parquet").pending_loads, "a pending load supersedes compacted rows"
        assert read_all(session) == first, "the views read before the load keep their state"
        session.execute((out_dir / "current_state.sql").read_text(encoding="utf-8"))
        again = read_all(session)
    finally:
        session.close()
    assert again == sql_file_contents(out_dir) == contents(out_dir)
    assert again["runs"] != first["runs"] and len(again["runs"]) == len(first["runs"])
