"""Loading the same sessions again never duplicates a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli, SimulatedPiper, load_args, query
from tests.test_parquet_invariant import assert_parquet_equals_duckdb

KEYS = {"runs": "run_id", "turns": "turn_result_id", "criteria_results": "criteria_result_id"}


def assert_unique_keys(out_dir: Path) -> None:
    for table, key in KEYS.items():
        total, distinct = query(out_dir, f"SELECT count(*), count(DISTINCT {key}) FROM {table}")[0]
        assert total == distinct, f"{table} has duplicate {key}"


def test_second_load_skips_final_runs_and_adds_no_duplicates(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids
    first = cli(*load_args(piper, out_dir, *ids))
    assert first.code == 0, first.stderr
    counts = {t: query(out_dir, f"SELECT count(*) FROM {t}")[0][0] for t in KEYS}
    assert counts["runs"] == len(ids) and counts["criteria_results"] > 0

    def by_session_requests() -> int:  # the scenarios list is read again too (tests/test_dimensions_load.py)
        return sum(1 for request in piper.state.requests if request.session_id is not None)

    requests_before = by_session_requests()
    second = cli(*load_args(piper, out_dir, *ids))
    assert second.code == 0, second.stderr
    assert_unique_keys(out_dir)
    assert {t: query(out_dir, f"SELECT count(*) FROM {t}")[0][0] for t in KEYS} == counts
    final = query(out_dir, "SELECT count(*) FROM runs WHERE status IN ('passed', 'failed', 'error')")[0][0]
    assert by_session_requests() - requests_before == len(ids) - final, "only non-final runs are fetched again"
    skipped = query(
        out_dir,
        "SELECT count(*) FROM fetch_log WHERE outcome = 'skipped' AND attempts = 0 AND run_id IS NOT NULL "
        "AND load_id = (SELECT max(load_id) FROM loads)",
    )[0][0]
    assert skipped == final


@pytest.mark.parametrize("output_format", ["both", "duckdb"])
def test_refetch_loads_everything_again_without_duplicates(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, output_format: str
) -> None:
    ids = piper.dataset.session_ids[:10]
    for _ in range(3):
        result = cli(*load_args(piper, out_dir, "--refetch", "--format", output_format, *ids))
        assert result.code == 0, result.stderr
    assert_unique_keys(out_dir)
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 10
    assert query(out_dir, "SELECT count(*), count(DISTINCT load_id) FROM loads")[0] == (3, 3)
    assert query(out_dir, "SELECT count(*) FROM fetch_log WHERE outcome = 'loaded'")[0][0] == 30
    assert (out_dir / "parquet").exists() == (output_format == "both")
    assert not (out_dir / "_staging").exists()


def test_duplicate_ids_in_one_request_are_loaded_once(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    sid = piper.dataset.session_ids[0]
    result = cli(*load_args(piper, out_dir, sid, sid, sid))
    assert result.code == 0
    assert piper.state.session_hits[sid] == 1
    assert query(out_dir, "SELECT count(*) FROM fetch_log")[0][0] == 1


def test_two_sessions_returning_the_same_run_keep_one_copy(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    shared = piper.dataset.run_for(piper.dataset.session_ids[0])
    for sid in ("twin-a", "twin-b"):
        piper.dataset.add_session(sid)
        piper.dataset.set_payload(sid, shared)
    result = cli(*load_args(piper, out_dir, "--chunk-size", "1", "twin-a", "twin-b", piper.dataset.session_ids[1]))
    assert result.code == 0, result.stderr
    assert_unique_keys(out_dir)
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 2
    assert_parquet_equals_duckdb(out_dir)
