"""The Parquet landing files, reduced to the current state by the shipped SQL, equal the DuckDB tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb

from tests.conftest import Cli, SimulatedPiper, load_args, query
from warehouse.views import open_current_state

TABLES = {"runs": "run_id", "turns": "turn_result_id, run_id", "criteria_results": "criteria_result_id, run_id",
          "fetch_log": "load_id, session_id", "rejected_payloads": "load_id, session_id", "loads": "load_id"}


def table_rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[object, ...]]:
    return con.execute(f"SELECT * FROM {table} ORDER BY {TABLES[table]}").fetchall()


def assert_parquet_equals_duckdb(out_dir: Path) -> None:
    parquet = open_current_state(out_dir / "parquet")
    database = duckdb.connect(str(out_dir / "piper.duckdb"), read_only=True)
    try:
        for table in TABLES:
            columns = [r[0] for r in database.execute(f"DESCRIBE {table}").fetchall()]
            select = ", ".join(columns)
            left = parquet.execute(f"SELECT {select} FROM {table} ORDER BY {TABLES[table]}").fetchall()
            right = database.execute(f"SELECT {select} FROM {table} ORDER BY {TABLES[table]}").fetchall()
            assert left == right, f"{table} differs between Parquet and DuckDB"
    finally:
        parquet.close()
        database.close()


def test_invariant_holds_across_a_sequence_of_loads(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    ids = piper.dataset.session_ids
    piper.dataset.add_session("bad", status="passed")
    piper.dataset.set_payload("bad", [1, 2, 3])
    cli(*load_args(piper, out_dir, "--chunk-size", "8", *ids, "bad", "unknown"))
    assert_parquet_equals_duckdb(out_dir)
    piper.dataset.complete_pending()
    cli(*load_args(piper, out_dir, "--chunk-size", "8", *ids))
    assert_parquet_equals_duckdb(out_dir)
    cli(*load_args(piper, out_dir, "--refetch", *ids[:5]))
    assert_parquet_equals_duckdb(out_dir)


def test_parquet_only_load_skips_final_runs_from_the_parquet_state(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, "--format", "parquet", *ids)).code == 0
    assert not (out_dir / "piper.duckdb").exists()
    def by_session_requests() -> int:  # not the scenarios list, which every load that lands runs reads
        return sum(1 for request in piper.state.requests if request.session_id is not None)

    hits = by_session_requests()
    assert cli(*load_args(piper, out_dir, "--format", "parquet", *ids)).code == 0
    con = open_current_state(out_dir / "parquet")
    non_final = con.execute("SELECT count(*) FROM runs WHERE status NOT IN ('passed', 'failed', 'error')").fetchone()
    assert non_final is not None and by_session_requests() - hits == non_final[0]
    # Switching to DuckDB later merges every earlier Parquet load first: the invariant holds again.
    assert cli(*load_args(piper, out_dir, *ids[:2])).code == 0
    assert_parquet_equals_duckdb(out_dir)


def test_current_state_sql_file_works_from_the_output_folder(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    cli(*load_args(piper, out_dir, *piper.dataset.session_ids[:4]))
    script = (
        "import duckdb; con = duckdb.connect(); con.execute(open('current_state.sql').read()); "
        "print(con.execute('SELECT count(*) FROM runs').fetchone()[0])"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=out_dir, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "4"


def test_no_partial_parquet_file_is_left(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    cli(*load_args(piper, out_dir, *piper.dataset.session_ids))
    leftovers = [p for p in (out_dir / "parquet").rglob("*") if p.is_file() and p.suffix != ".parquet"]
    assert leftovers == []


def test_an_older_load_merged_late_never_replaces_newer_runs(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    sid = "web-late-merge"
    piper.dataset.add_session(sid, status="running")
    assert cli(*load_args(piper, out_dir, "--format", "parquet", sid)).code == 0  # landed, never merged
    piper.dataset.complete_pending(sid)
    assert cli(*load_args(piper, out_dir, "--format", "duckdb", sid)).code == 0  # newer, straight to DuckDB
    newer = query(out_dir, "SELECT status, turn_count FROM runs")[0]
    assert newer[0] in ("passed", "failed")
    assert cli(*load_args(piper, out_dir, "unknown-session")).code == 0  # merges the older Parquet load now
    assert query(out_dir, "SELECT status, turn_count FROM runs") == [newer]
    assert query(out_dir, "SELECT count(*) FROM loads")[0][0] == 3
    total, distinct = query(out_dir, "SELECT count(*), count(DISTINCT turn_result_id) FROM turns")[0]
    assert total == distinct == newer[1]
