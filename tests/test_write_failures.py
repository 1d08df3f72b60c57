"""Disk full and a locked database: the error surfaces, nothing half-written stays, nothing fetched is lost."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, assert_no_canary, load_args, query
from tests.test_crash_recovery import content
from tests.test_parquet_invariant import assert_parquet_equals_duckdb
from warehouse import landing


def snapshot_files(folder: Path) -> dict[str, bytes]:
    """Every file a reader may open (not `_loads/`, where loads keep their manifests and sequence)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] != "_loads"
    }


def test_disk_full_during_a_part_removes_the_temp_file_and_keeps_the_old_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "runs" / "load-00001.parquet"
    landing.write_part(pa.table({"x": [1, 2, 3]}), target)
    before = target.read_bytes()

    def full_disk(table: pa.Table, sink: Any, **kwargs: Any) -> None:
        sink.write(b"PAR1 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        landing.write_part(pa.table({"x": [4]}), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["load-00001.parquet"]


def test_a_failed_chunk_leaves_none_of_its_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = landing.write_part
    calls = {"n": 0}

    def fail_second(table: pa.Table, path: Path, **kwargs: Any) -> Path:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(table, path, **kwargs)

    monkeypatch.setattr(landing, "write_part", fail_second)
    tables = {name: _one_row(name) for name in ("runs", "turns", "fetch_log")}
    with pytest.raises(OSError):
        landing.write_chunk(tmp_path, "load", "main-0001", tables)
    assert list(tmp_path.rglob("*.parquet")) == [], "the part written before the failure is removed"


def _one_row(table: str) -> pa.Table:
    """A one-row table of a landed table's schema, with placeholder values of the right types."""
    schema = landing.LANDED_TABLES[table]
    values: dict[str, object] = {}
    for field in schema:
        if pa.types.is_string(field.type):
            values[field.name] = "x"
        elif pa.types.is_timestamp(field.type):
            values[field.name] = datetime(2026, 1, 1, tzinfo=UTC)
        elif pa.types.is_boolean(field.type):
            values[field.name] = True
        else:
            values[field.name] = 1
    return pa.Table.from_pylist([values], schema=schema)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))


def test_disk_full_load_surfaces_the_error_and_keeps_earlier_outputs(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, *ids[:3])).code == 0
    before_files, before_content = snapshot_files(out_dir), content(out_dir)

    env = {**os.environ, "PIPER_API_TOKEN": CANARY_TOKEN}
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *load_args(piper, out_dir, "--refetch", *ids)],
        env=env, capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size, check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "piper-etl load: error: cannot write the output (File too large)" in done.stderr
    assert "Traceback" not in done.stderr
    assert_no_canary(done.stdout, done.stderr)
    assert snapshot_files(out_dir) == before_files, "earlier outputs intact, no temp file left"
    assert content(out_dir) == before_content

    assert cli(*load_args(piper, out_dir, *ids)).code == 0, "the next run with room to write succeeds"
    assert_parquet_equals_duckdb(out_dir)


def test_locked_database_waits_then_names_the_holder_and_keeps_the_fetched_data(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, *ids[:3])).code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
         "print('ready', flush=True); time.sleep(60)", str(out_dir / "piper.duckdb")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        result = cli(*load_args(piper, out_dir, "--lock-timeout", "1", *ids[3:10]))
    finally:
        holder.kill()
        holder.communicate(timeout=30)  # reaps the process and closes its pipe
    assert result.code == 1
    assert "is locked by another process after waiting 1 s" in result.stderr
    assert f"PID {holder.pid}" in result.stderr
    assert "the next load merges it" in result.stderr
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 3

    # The landed parts of the blocked load are merged by the next load, which fetches nothing new.
    assert cli(*load_args(piper, out_dir, *ids[:3])).code == 0
    stored = {row[0] for row in query(out_dir, "SELECT session_id FROM runs")}
    assert stored == set(ids[:10])
    assert query(out_dir, "SELECT count(*) FROM loads")[0][0] == 3
    assert_no_canary(result.stdout, result.stderr, folder=out_dir)
    assert_parquet_equals_duckdb(out_dir)
