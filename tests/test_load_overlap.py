"""Loads that overlap in one output folder: none harms another, and a killed one converges on the next load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.fake_api import FakePiper, serve
from tests.conftest import CANARY_TOKEN, SimulatedPiper, assert_no_canary
from tests.test_parquet_invariant import assert_parquet_equals_duckdb
from warehouse.views import open_current_state

FORMATS = ["duckdb", "parquet", "both"]


@pytest.fixture
def slow_url(piper: SimulatedPiper) -> Iterator[str]:
    """The same simulated API (same data), answering each request after 60 ms."""
    state = FakePiper(dataset=piper.dataset, token=CANARY_TOKEN, retry_after="0", latency_ms=60)
    with serve(state) as base_url:
        yield base_url


def start_load(
    piper: SimulatedPiper, base_url: str, out_dir: Path, ids: list[str], *extra: str
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPER_", "PREFECT_API"))}
    env["PIPER_API_TOKEN"] = CANARY_TOKEN
    args = ["load", "--org-id", piper.org_id, "--base-url", base_url, "--out", str(out_dir), *extra, *ids]
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_chunks(out_dir: Path, at_least: int, timeout: float = 60) -> None:
    """Until some load has landed `at_least` chunks (its fetch-log parts), in either landing root."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [*out_dir.glob("parquet/fetch_log/*.parquet"), *out_dir.glob("_staging/fetch_log/*.parquet")]
        if len(found) >= at_least:
            return
        time.sleep(0.02)
    raise AssertionError("the slow load landed no chunk in time")


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def stored(out_dir: Path, fmt: str, sql: str) -> list[tuple[object, ...]]:
    """Rows of `sql` from DuckDB (formats duckdb, both) or from the Parquet current state (parquet)."""
    if fmt == "parquet":
        con = open_current_state(out_dir / "parquet")
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    import duckdb

    database = duckdb.connect(str(out_dir / "piper.duckdb"), read_only=True)
    try:
        return database.execute(sql).fetchall()
    finally:
        database.close()


@pytest.mark.parametrize("round_", [1, 2], ids=["round-1", "round-2"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_quick_loads_started_during_a_slow_load_harm_none(
    piper: SimulatedPiper, slow_url: str, out_dir: Path, fmt: str, round_: int
) -> None:
    ids = piper.dataset.session_ids
    slow_ids = ids[:24]
    slow = start_load(piper, slow_url, out_dir, slow_ids, "--format", fmt, "--concurrency", "1", "--chunk-size", "2")
    wait_for_chunks(out_dir, 1)
    quick_batches = [ids[0:6], ids[10:18], ids[20:30]]  # overlapping the slow load's sessions, and beyond
    quick = [start_load(piper, piper.base_url, out_dir, batch, "--format", fmt, "--chunk-size", "3")
             for batch in quick_batches]
    results = [finish(process) for process in [slow, *quick]]
    for code, out, err in results:
        assert code == 0, err
        assert "Traceback" not in err
        assert_no_canary(out, err)
    requested = {tuple(sorted(slow_ids)), *(tuple(sorted(b)) for b in quick_batches)}
    logged = stored(out_dir, fmt, "SELECT load_id, list(session_id ORDER BY session_id) FROM fetch_log GROUP BY 1")
    assert {tuple(sessions) for _, sessions in logged} == requested, "every session of every load accounted for"
    assert stored(out_dir, fmt, "SELECT status, count(*) FROM loads GROUP BY 1") == [("succeeded", 4)]
    with_run = {s for s in ids[:30] if piper.dataset.has_run(s)}
    assert stored(out_dir, fmt, "SELECT count(*), count(DISTINCT run_id), count(DISTINCT session_id) FROM runs") == [
        (len(with_run), len(with_run), len(with_run))], "no duplicates, none lost"
    if fmt == "both":
        assert_parquet_equals_duckdb(out_dir)
    assert not list((out_dir / "_loads").glob("*.json")), "every load released its manifest"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_load_killed_while_another_runs_converges_on_the_next_load(
    piper: SimulatedPiper, slow_url: str, out_dir: Path, fmt: str
) -> None:
    ids = piper.dataset.session_ids
    slow_ids = ids[:24]
    slow = start_load(piper, slow_url, out_dir, slow_ids, "--format", fmt, "--concurrency", "1", "--chunk-size", "2")
    wait_for_chunks(out_dir, 3)
    quick = start_load(piper, piper.base_url, out_dir, ids[20:30], "--format", fmt)
    slow.send_signal(signal.SIGKILL)
    assert finish(slow)[0] == -signal.SIGKILL
    code, _, err = finish(quick)
    assert code == 0, err

    rerun = start_load(piper, piper.base_url, out_dir, slow_ids, "--format", fmt)
    code, _, err = finish(rerun)
    assert code == 0, err
    statuses = [row[0] for row in stored(out_dir, fmt, "SELECT status FROM loads ORDER BY load_seq")]
    assert sorted(statuses) == ["recovered", "succeeded", "succeeded"], statuses
    with_run = {s for s in ids[:30] if piper.dataset.has_run(s)}
    assert stored(out_dir, fmt, "SELECT count(*), count(DISTINCT run_id), count(DISTINCT session_id) FROM runs") == [
        (len(with_run), len(with_run), len(with_run))]
    if fmt == "both":
        assert_parquet_equals_duckdb(out_dir)
    assert not list((out_dir / "_loads").glob("*.json")), "the killed load's manifest was recovered and released"
    assert not [p for p in out_dir.rglob("*") if p.name.endswith(".tmp")], "no temporary file left"
