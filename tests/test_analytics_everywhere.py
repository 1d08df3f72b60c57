"""The same analytics views, with the same rows, in piper.duckdb, over the Parquet files and in current_state.sql."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pytest

from flows.chunks import log_row, log_table
from tests.analytics_golden import LOADED_AT, PRICES, golden_tables
from tests.conftest import Cli, SimulatedPiper, load_args
from warehouse import analytics, ddl, publish, store
from warehouse.load import open_load
from warehouse.reader import open_analytics
from warehouse.records import LoadCounts

ORDER = {
    "scenario_summary": "scenario_id, is_test",
    "criteria_summary": "scenario_id, criteria_id, is_test",
    "agent_summary": "agent_id NULLS FIRST, scenario_id, is_test",
    "daily_summary": "day, scenario_id, is_test",
    "scenario_trend": "week, scenario_id, is_test",
    "criteria_stability": "scenario_id, criteria_id, is_test",
    "run_costs": "run_id",
    "failures": "criteria_result_id",
}


def write_golden_output(out_dir: Path) -> None:
    """The golden rows landed and committed by a load transaction, as Parquet parts and in piper.duckdb."""
    with open_load(out_dir, format="both") as load:
        tables = dict(golden_tables(load.load_id))
        runs = tables["runs"].to_pylist()
        tables["fetch_log"] = log_table([
            log_row(load.load_id, str(run["session_id"]), "loaded", fetched_at=LOADED_AT, run_id=str(run["run_id"]))
            for run in runs
        ])
        load.land("golden", tables)
        counts = LoadCounts(Counter({"loaded": len(runs)}), Counter({n: t.num_rows for n, t in tables.items()}))
        load.commit("succeeded", counts, {}, prices=PRICES)


def view_rows(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[object, ...]]:
    """The view's rows in a fixed order; floats rounded, as a sum's last bit depends on the order it adds in."""
    rows = con.execute(f"SELECT * FROM {view} ORDER BY {ORDER[view]}").fetchall()
    return [tuple(round(v, 12) if isinstance(v, float) else v for v in row) for row in rows]


def test_views_agree_between_the_database_and_the_parquet_files(tmp_path: Path) -> None:
    write_golden_output(tmp_path)
    database = duckdb.connect(str(tmp_path / store.DATABASE_FILE), read_only=True)
    database.execute("SET TimeZone = 'UTC'")
    parquet = open_analytics(tmp_path)
    snapshot = open_analytics(tmp_path, prefer_snapshot=True)
    try:
        assert parquet.source == tmp_path / "parquet" and snapshot.source == tmp_path / "piper-bi.duckdb"
        for view in analytics.VIEWS:
            expected = view_rows(database, view)
            assert expected, view
            assert view_rows(parquet.con, view) == expected, view
            assert view_rows(snapshot.con, view) == expected, view
        agent_usage = "SELECT sum(agent_runs), count(agent_runs), sum(agent_input_tokens) FROM {}"
        for con in (database, parquet.con, snapshot.con):  # the agent's usage reaches every store's views
            assert con.execute(agent_usage.format("run_costs")).fetchone() == (4, 4, 2000)
            assert con.execute(agent_usage.format("scenario_summary")).fetchone() == (4, 2, 2000)
    finally:
        database.close()
        parquet.close()
        snapshot.close()


def test_views_read_a_snapshot_from_before_the_dimensions(tmp_path: Path) -> None:
    """An older snapshot has no dimension tables and no agent columns: they read as empty and NULL."""
    con = duckdb.connect(str(tmp_path / "piper-bi.duckdb"))
    try:
        for name, table in golden_tables().items():
            if name in ("runs", "turns", "criteria_results"):
                con.register("golden", table.drop_columns(["agent_id", "agent_name", "is_test"])
                             if name == "runs" else table)
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM golden")
                con.unregister("golden")
        for name in ("fetch_log", "loads", "rejected_payloads"):
            con.execute(ddl.create_table_sql(name))
    finally:
        con.close()
    opened = open_analytics(tmp_path)
    try:
        assert opened.reads_snapshot
        assert opened.con.execute("SELECT sum(runs), bool_or(is_test), count(agent_id) FROM agent_summary"
                                  ).fetchone() == (9, False, 0)
        assert opened.con.execute("SELECT count(required) FROM criteria_summary").fetchone() == (0,)
        assert opened.con.execute("SELECT count(agent_runs), count(agent_cost_usd) FROM run_costs").fetchone() == (
            0, 0), "no agent_usage table: never fetched, NULL"
    finally:
        opened.close()


def test_current_state_sql_defines_the_views_for_parquet_only_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_golden_output(tmp_path)
    publish.write_current_state_file(tmp_path, tmp_path / "parquet")  # again: replaces, never duplicates
    script = (tmp_path / "current_state.sql").read_text(encoding="utf-8")
    assert script.count(analytics.MARKER) == 1 and script.count("CREATE OR REPLACE VIEW scenario_summary") == 1
    monkeypatch.chdir(tmp_path)  # the file's paths are relative to the output folder, like `.read` from there
    con = duckdb.connect()
    con.execute(script)
    reference = open_analytics(tmp_path)
    try:
        for view in analytics.VIEWS:
            assert view_rows(con, view) == view_rows(reference.con, view), view
        assert con.execute("SELECT judge_model FROM token_prices WHERE selected").fetchall() == [("judge-golden",)]
    finally:
        reference.close()


def test_a_load_creates_the_views_in_the_database_and_the_sql_file(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    assert cli(*load_args(piper, out_dir, *piper.dataset.session_ids[:6])).code == 0
    con = duckdb.connect(str(out_dir / "piper.duckdb"), read_only=True)
    try:
        listed = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert set(analytics.VIEWS) <= listed
        assert con.execute("SELECT sum(runs) FROM scenario_summary").fetchone() == (6,)
        assert con.execute("SELECT count(*) FROM token_prices").fetchone() == (0,)
    finally:
        con.close()
    assert "CREATE OR REPLACE VIEW failures" in (out_dir / "current_state.sql").read_text(encoding="utf-8")


def test_views_survive_a_new_column_in_a_table(tmp_path: Path) -> None:
    """A newer piper-etl adds columns (never renames): the views, which name their columns, keep working."""
    write_golden_output(tmp_path)
    con = store.connect(tmp_path / store.DATABASE_FILE)
    try:
        con.execute("ALTER TABLE runs ADD COLUMN added_later VARCHAR")
        assert con.execute("SELECT count(*) FROM run_costs").fetchone() == (9,)
    finally:
        con.close()


def test_current_state_sql_runs_from_anywhere_with_a_file_search_path(tmp_path: Path) -> None:
    """What docs/bi.md tells BI tools that run DuckDB SQL from another folder."""
    write_golden_output(tmp_path)
    con = duckdb.connect()
    con.execute("SET file_search_path = ?", [str(tmp_path)])
    con.execute((tmp_path / "current_state.sql").read_text(encoding="utf-8"))
    assert con.execute("SELECT sum(runs) FROM scenario_summary").fetchone() == (9,)


def test_the_flow_summary_read_while_the_snapshot_is_copied_says_what_snapshot_and_parquet_say(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    assert cli(*load_args(piper, out_dir, *piper.dataset.session_ids[:8])).code == 0
    con = store.connect(out_dir / store.DATABASE_FILE)
    try:  # what a commit asked for the summary does after its COMMIT, on the writer connection
        from_writer = publish.publish_duckdb(con, out_dir, None, LOADED_AT, summarize=True)
    finally:
        con.close()
    snapshot_reader = open_analytics(out_dir, prefer_snapshot=True)
    try:
        assert snapshot_reader.source == out_dir / "piper-bi.duckdb"
    finally:
        snapshot_reader.close()
    from_snapshot = publish.analytics_markdown(out_dir, prefer_snapshot=True)
    assert from_writer is not None and "| scenario | runs |" in from_writer
    assert from_writer == from_snapshot
    assert from_snapshot == publish.analytics_markdown(out_dir)  # the Parquet files say the same


def test_a_failed_snapshot_copy_fails_the_publish_even_while_summarizing(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warehouse import snapshot

    assert cli(*load_args(piper, out_dir, *piper.dataset.session_ids[:2])).code == 0

    def full_disk(database: Path, target: Path) -> Path:
        raise OSError("simulated: no space left on device")

    monkeypatch.setattr(snapshot, "publish_snapshot", full_disk)
    con = store.connect(out_dir / store.DATABASE_FILE)
    try:
        with pytest.raises(OSError, match="no space left"):
            publish.publish_duckdb(con, out_dir, None, LOADED_AT, summarize=True)
    finally:
        con.close()
