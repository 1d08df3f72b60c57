"""The BI snapshot OUT/piper-bi.duckdb: replaced whole after each load, never blocking it, never half a load."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Cli, SimulatedPiper, load_args, query
from warehouse import snapshot
from warehouse.reader import open_analytics

# A dashboard: opens the snapshot read-only, answers, then waits holding it open, and answers again.
READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
def answer():
    runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    loads = con.execute("SELECT count(*) FROM loads").fetchone()[0]
    summed = con.execute("SELECT sum(runs) FROM scenario_summary").fetchone()[0]
    print(runs, loads, summed, flush=True)
answer()
sys.stdin.readline()
answer()
"""


def snapshot_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    # A fresh process: DuckDB caches open databases per process, and a dashboard is another process anyway.
    script = (
        "import duckdb, json, sys; "
        f"print(json.dumps(duckdb.connect(sys.argv[1], read_only=True).execute({sql!r}).fetchall()))"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    return [tuple(row) for row in json.loads(done.stdout)]


def test_a_load_publishes_a_snapshot_with_tables_and_views(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    assert cli(*load_args(piper, out_dir, *piper.dataset.session_ids[:5])).code == 0
    published = out_dir / "piper-bi.duckdb"
    assert snapshot_rows(published, "SELECT count(*) FROM runs") == [(5,)]
    assert snapshot_rows(published, "SELECT sum(runs) FROM scenario_summary") == [(5,)]
    assert [p.name for p in out_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_a_reader_holding_the_snapshot_keeps_the_previous_state_and_the_load_succeeds(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, *ids[:10])).code == 0
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(out_dir / "piper-bi.duckdb")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().split() == ["10", "1", "10"]
        result = cli(*load_args(piper, out_dir, *ids))  # the dashboard still has the snapshot open
        assert result.code == 0, result.stderr
        reader.stdin.write("go on\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["10", "1", "10"], "the open reader saw a different state"
    finally:
        _, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    total = len(ids)
    assert snapshot_rows(out_dir / "piper-bi.duckdb", "SELECT count(*) FROM runs") == [(total,)]
    assert snapshot_rows(out_dir / "piper-bi.duckdb", "SELECT count(*) FROM loads") == [(2,)]
    assert query(out_dir, "SELECT count(*) FROM runs") == [(total,)]


def test_a_publish_that_fails_midway_leaves_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, target = tmp_path / "piper.duckdb", tmp_path / "piper-bi.duckdb"
    con = duckdb.connect(str(database))
    con.execute("CREATE TABLE runs AS SELECT 1 AS run_id")
    con.execute("CHECKPOINT")
    assert snapshot.publish_snapshot(database, target) == target
    con.execute("INSERT INTO runs VALUES (2)")
    con.execute("CHECKPOINT")

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", disk_full)
    with pytest.raises(OSError, match="No space left"):
        snapshot.publish_snapshot(database, target)
    con.close()
    assert snapshot_rows(target, "SELECT count(*) FROM runs") == [(1,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piper-bi.duckdb", "piper.duckdb"]


def test_a_database_with_unwritten_changes_is_not_copied(tmp_path: Path) -> None:
    database = tmp_path / "piper.duckdb"
    con = duckdb.connect(str(database))
    try:
        con.execute("CREATE TABLE runs AS SELECT 1 AS run_id")  # in the write-ahead log until a checkpoint
        with pytest.raises(snapshot.SnapshotError, match="write-ahead log"):
            snapshot.publish_snapshot(database, tmp_path / "piper-bi.duckdb")
    finally:
        con.close()
    assert not (tmp_path / "piper-bi.duckdb").exists()


def test_a_duckdb_only_output_is_read_through_its_snapshot(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    assert cli(*load_args(piper, out_dir, "--format", "duckdb", *piper.dataset.session_ids[:4])).code == 0
    assert not (out_dir / "parquet").exists()
    opened = open_analytics(out_dir)
    try:
        assert opened.source == out_dir / "piper-bi.duckdb"
        assert opened.con.execute("SELECT sum(runs) FROM scenario_summary").fetchone() == (4,)
    finally:
        opened.close()


def test_a_parquet_only_output_publishes_no_snapshot(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    assert cli(*load_args(piper, out_dir, "--format", "parquet", *piper.dataset.session_ids[:3])).code == 0
    assert not (out_dir / "piper-bi.duckdb").exists()
