"""Incremental syncs fetch exactly the new, unfinished and updated sessions, counted from the API's request log."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Cli, SimulatedPiper, assert_no_canary, query
from tests.sync_support import Requests, org, sync_args, unfinished

__all__ = ["org"]


def test_each_sync_fetches_exactly_what_is_new_unfinished_or_updated(org: SimulatedPiper, cli: Cli,
                                                                      out_dir: Path) -> None:
    dataset, requests = org.dataset, Requests(org)

    first = cli(*sync_args(org, out_dir))
    assert first.code == 0, first.stderr
    fetched, pages = requests.take()
    assert fetched == {s: 1 for s in dataset.session_ids}, "every session with a run, once; none without"
    assert not set(fetched) & set(dataset.runless_ids)
    assert "queued 60: 60 new, 0 unfinished, 0 updated" in first.stdout and pages == 1
    assert query(out_dir, "SELECT count(*) FROM sessions")[0][0] == 60
    assert query(out_dir, "SELECT count(*) FROM sessions WHERE session_id IN (SELECT unnest(?))",
                 [dataset.runless_ids])[0][0] == 0

    # The org moves on: some runs finish, two final runs are re-run, sessions come and go.
    still_open = sorted(unfinished(dataset))
    assert len(still_open) >= 3
    dataset.complete_pending(still_open[0])
    final = [s for s in dataset.session_ids if s not in still_open]
    rerun = final[:2]
    for session_id in rerun:
        dataset.rerun(session_id, status="failed")
    old_run_ids = dict(query(out_dir, "SELECT session_id, run_id FROM runs WHERE session_id IN (SELECT unnest(?))",
                             [rerun]))
    for index in range(3):
        dataset.add_session(f"web-new-{index}")
    dataset.add_runless_session("web-no-run-yet")
    dataset.remove_session(final[5])

    second = cli(*sync_args(org, out_dir))
    assert second.code == 0, second.stderr
    fetched, _ = requests.take()
    new = {f"web-new-{index}" for index in range(3)}
    assert fetched == {s: 1 for s in {*still_open, *rerun, *new}}, "unfinished (listed or not), updated, new"
    assert f"3 new, {len(still_open)} unfinished, 2 updated" in second.stdout
    runs = dict(query(out_dir, "SELECT session_id, run_id FROM runs WHERE session_id IN (SELECT unnest(?))", [rerun]))
    assert all(runs[s] != old_run_ids[s] for s in rerun), "a re-run replaces the stored run"
    assert query(out_dir, "SELECT count(*) FROM sessions")[0][0] == 63

    # Nothing changed: only the runs still unfinished are fetched again.
    third = cli(*sync_args(org, out_dir))
    assert third.code == 0, third.stderr
    fetched, _ = requests.take()
    assert fetched == {s: 1 for s in unfinished(dataset)}
    assert query(out_dir, "SELECT count(*), count(DISTINCT load_id) FROM sync_state") == [(3, 3)]
    assert query(out_dir, "SELECT sessions_queued FROM sync_state ORDER BY started_at") == [
        (60,), (len(still_open) + 5,), (len(unfinished(dataset)),)
    ]
    assert_no_canary(first.stdout, second.stdout, third.stdout, folder=out_dir)


def test_a_session_loaded_by_load_is_refetched_by_sync_only_if_it_changed_since(
    org: SimulatedPiper, cli: Cli, out_dir: Path
) -> None:
    dataset, requests = org.dataset, Requests(org)
    final = [s for s in dataset.session_ids if s not in unfinished(dataset)][:4]
    loaded = cli("load", "--org-id", org.org_id, "--base-url", org.base_url, "--out", str(out_dir), *final)
    assert loaded.code == 0, loaded.stderr
    dataset.rerun(final[0])
    requests.take()
    result = cli(*sync_args(org, out_dir))
    assert result.code == 0, result.stderr
    fetched, _ = requests.take()
    assert final[0] in fetched and not set(final[1:]) & set(fetched), "unchanged final runs are kept"
    assert query(out_dir, "SELECT count(*) FROM sessions WHERE session_id IN (SELECT unnest(?))", [final])[0][0] == 4
