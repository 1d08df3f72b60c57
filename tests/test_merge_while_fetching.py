"""A local load inserts each landed chunk into DuckDB while it fetches, yet shows nothing until its COMMIT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.chunks import ChunkBuilder, ChunkReport, ChunkSink
from tests.conftest import Cli, SimulatedPiper, load_args, query
from tests.test_crash_recovery import content
from tests.test_parquet_invariant import assert_parquet_equals_duckdb
from warehouse import load as load_module
from warehouse import store
from warehouse.merge import Merge


def test_chunks_are_inserted_before_the_commit_and_invisible_until_it(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, *ids[:3])).code == 0
    seen: dict[str, Any] = {}
    commit = Merge.commit

    def observed_commit(self: Merge, load_row: dict[str, object]) -> None:
        seen["inserted_before_commit"] = len(self.inserted)
        seen["inserted"] = self.con.execute("SELECT count(*) FROM runs WHERE _load_id = ?", [self.load_id]).fetchone()
        other = self.con.cursor()  # another connection to the same database sees committed data only
        seen["visible_elsewhere"] = other.execute(f"SELECT count(*) FROM {store.CATALOG}.runs").fetchone()
        other.close()
        commit(self, load_row)

    monkeypatch.setattr(Merge, "commit", observed_commit)
    assert cli(*load_args(piper, out_dir, "--chunk-size", "4", "--refetch", *ids[:20])).code == 0
    assert seen["inserted_before_commit"] >= 3 * 4, "the full chunks' parts were inserted while fetching"
    assert seen["inserted"][0] >= 16
    assert seen["visible_elsewhere"] == (3,)
    assert query(out_dir, "SELECT count(*), count(DISTINCT run_id) FROM runs")[0] == (20, 20)
    assert_parquet_equals_duckdb(out_dir)


def test_a_load_that_fails_while_fetching_rolls_back_and_the_next_load_recovers_its_chunks(
    piper: SimulatedPiper, out_dir: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = piper.dataset.session_ids[:20]
    reference = tmp_path / "reference"
    assert cli(*load_args(piper, reference, "--chunk-size", "4", *ids)).code == 0
    assert cli(*load_args(piper, out_dir, *ids[:2])).code == 0
    before = content(out_dir)
    land = ChunkBuilder.land

    def failing_land(self: ChunkBuilder, sink: ChunkSink) -> ChunkReport:
        if self.report.part == "main-0003":
            raise OSError("simulated write failure")
        return land(self, sink)

    monkeypatch.setattr(ChunkBuilder, "land", failing_land)
    failed = cli(*load_args(piper, out_dir, "--chunk-size", "4", *ids))
    assert failed.code != 0 and "simulated write failure" in failed.stderr
    assert content(out_dir) == before, "chunks 1 and 2 were inserted, then rolled back"
    assert query(out_dir, "SELECT count(*) FROM loads")[0][0] == 1

    monkeypatch.setattr(ChunkBuilder, "land", land)
    requests_before = len(piper.state.requests)
    assert cli(*load_args(piper, out_dir, "--chunk-size", "4", *ids)).code == 0
    assert content(out_dir) == content(reference)
    assert query(out_dir, "SELECT status FROM loads ORDER BY load_seq") == [
        ("succeeded",), ("recovered",), ("succeeded",)], "the failed load's landed chunks were recovered"
    refetched = {r.session_id for r in piper.state.requests[requests_before:]}
    recovered = {row[0] for row in query(out_dir, "SELECT session_id FROM fetch_log f JOIN loads USING (load_id) "
                                                  "WHERE status = 'recovered' AND outcome = 'loaded'")}
    assert len(recovered) == 8 and not refetched & recovered, "what the recovery committed is not fetched again"
    assert_parquet_equals_duckdb(out_dir)


def inserted_before_each_commit(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Filled, for every merge committed from now on, with how many parts it had inserted before `commit`."""
    inserted: list[int] = []
    commit = Merge.commit

    def observed_commit(self: Merge, load_row: dict[str, object]) -> None:
        inserted.append(len(self.inserted))
        commit(self, load_row)

    monkeypatch.setattr(Merge, "commit", observed_commit)
    return inserted


def test_a_load_larger_than_the_limit_merges_after_its_fetch(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserted = inserted_before_each_commit(monkeypatch)
    monkeypatch.setattr(load_module, "MERGE_WHILE_FETCHING_UP_TO", 19)
    released: list[str] = []
    release = load_module.release_unused_memory
    monkeypatch.setattr(load_module, "release_unused_memory", lambda: (released.append("before the merge"), release()))
    ids = piper.dataset.session_ids[:20]
    assert cli(*load_args(piper, out_dir, "--chunk-size", "4", *ids)).code == 0
    assert inserted == [0], "nothing was inserted before the merge began"
    assert released == ["before the merge"], "what the fetch freed is handed back before DuckDB takes its share"
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 20
    assert_parquet_equals_duckdb(out_dir)
