"""The Parquet skip lookup reads only what decides the asked sessions, and answers what the full current state says."""

from __future__ import annotations

import copy
from itertools import combinations
from pathlib import Path

from tests.conftest import Cli, SimulatedPiper, load_args
from tests.test_run_identity import renamed_children, two_sessions_one_run
from warehouse import compacted, store
from warehouse.views import open_current_state


def from_views(parquet_root: Path, session_ids: list[str]) -> dict[str, tuple[str, str]]:
    con = open_current_state(parquet_root)
    try:
        return store.final_session_runs(con, session_ids)
    finally:
        con.close()


def assert_agrees(root: Path, asked: list[str]) -> None:
    for size in (1, 2, len(asked)):
        for subset in combinations(asked, size):
            assert store.landed_final_session_runs(root, list(subset)) == from_views(root, list(subset)), subset


def test_the_lookup_agrees_with_the_current_state_views_on_hostile_histories(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    root = out_dir / "parquet"
    assert store.landed_final_session_runs(root, ["anything"]) == {}, "an empty folder has no final run"
    low, high, _ = two_sessions_one_run(piper)  # one run id from two sessions: the newer load's copy wins
    final = [s for s in piper.dataset.session_ids[2:] if piper.dataset.status_of(s) in ("passed", "failed")]
    rerun_session, plain = final[0], final[1]
    pending = next(s for s in piper.dataset.session_ids if piper.dataset.status_of(s) in ("pending", "running"))
    asked = [low, high, rerun_session, pending, plain, "web-unknown-404", "web-never-asked"]
    loads = [[high, rerun_session, pending, plain], [low], ["web-unknown-404"]]
    for batch in loads:
        assert cli(*load_args(piper, out_dir, "--format", "parquet", "--refetch", *batch)).code == 0
        assert_agrees(root, asked)
    old = piper.dataset.run_for(rerun_session)
    assert old is not None
    rerun = renamed_children(copy.deepcopy(old), "rerun")
    rerun["id"], rerun["status"] = "11111111-2222-4333-8444-555555555555", "running"
    piper.dataset.set_payload(rerun_session, rerun)  # its newest run is not final any more
    assert cli(*load_args(piper, out_dir, "--format", "parquet", "--refetch", rerun_session)).code == 0
    assert compacted.read_manifest(root).covered, "the fourth load compacted the first ones"
    assert set(from_views(root, asked)) == {low, plain}, "the check itself: the run's newer copy, and the plain one"
    assert_agrees(root, asked)
    assert cli(*load_args(piper, out_dir, "--format", "parquet", "--refetch", high)).code == 0
    assert_agrees(root, asked)  # compacted files and a pending load's parts together
