"""`--with-agent-usage`: each fetched session's events land in `agent_usage` with its run, and the warehouse converges.

Against the simulated API over loopback; requests are counted from `FakePiper.requests`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import orjson
import pytest

from connector.client import FetchResult
from connector.fake_api._views import session_events
from flows.chunks import ChunkBuilder
from flows.pipeline import LoadSummary, run_load
from flows.settings import LoadSettings
from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, assert_no_canary, load_args
from warehouse import store, views
from warehouse.reader import open_analytics

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def stores(out_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The database, then the Parquet current state: every check below must hold in both."""
    for con in (store.connect(out_dir / store.DATABASE_FILE, read_only=True),
                views.open_current_state(out_dir / "parquet")):
        try:
            yield con
        finally:
            con.close()


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> list[tuple[Any, ...]]:
    return con.execute(sql, params or []).fetchall()


def load(piper: SimulatedPiper, out_dir: Path, session_ids: list[str], **settings: Any) -> LoadSummary:
    options = {"with_agent_usage": True, "max_retries": 0, **settings}
    return run_load(session_ids, LoadSettings(org_id=piper.org_id, base_url=piper.base_url, out_dir=out_dir,
                                              **options), CANARY_TOKEN)


def served_runs(piper: SimulatedPiper, session_id: str) -> list[dict[str, Any]]:
    body = session_events(piper.dataset, session_id)
    assert body is not None
    runs: list[dict[str, Any]] = orjson.loads(body)["runs"]
    return runs


def events_requests(piper: SimulatedPiper) -> list[str]:
    return [r.raw_path for r in piper.state.requests if r.raw_path.endswith("/events")]


def test_a_load_lands_every_agent_run_of_the_sessions_it_loads_in_both_stores(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids
    result = cli(*load_args(piper, out_dir, "--with-agent-usage", "--max-retries", "0"), *ids)
    assert result.code == 0, result.stderr
    expected = sorted((sid, run["id"], run["model_name"], run["total_input_tokens"], run["total_output_tokens"],
                       run["total_requests"]) for sid in ids for run in served_runs(piper, sid))
    for con in stores(out_dir):
        assert sorted(rows(con, "SELECT session_id, agent_run_id, model_name, input_tokens, output_tokens, requests "
                                "FROM agent_usage")) == expected
    assert len(events_requests(piper)) == len(ids), "one events request per session, in the same pass"
    assert f", {len(expected)} agent runs, " in result.stdout
    assert_no_canary(result.stdout, result.stderr, folder=out_dir)


def test_without_the_flag_no_events_are_requested_and_nothing_lands(piper: SimulatedPiper, out_dir: Path) -> None:
    summary = load(piper, out_dir, piper.dataset.session_ids[:5], with_agent_usage=False)
    assert summary.ok and not events_requests(piper)
    for con in stores(out_dir):
        assert rows(con, "SELECT count(*) FROM agent_usage") == [(0,)]


def test_a_final_run_stored_without_agent_usage_is_fetched_again_once(piper: SimulatedPiper, out_dir: Path) -> None:
    piper.dataset.complete_pending()
    ids = piper.dataset.session_ids[:8]
    assert load(piper, out_dir, ids, with_agent_usage=False).outcomes["loaded"] == 8
    second = load(piper, out_dir, ids)
    assert second.outcomes["loaded"] == 8 and second.outcomes["skipped"] == 0, "not skipped: agent usage is missing"
    third = load(piper, out_dir, ids)
    assert third.outcomes["skipped"] == 8, "now stored with their agent usage"
    assert len(events_requests(piper)) == 8
    for con in stores(out_dir):
        assert rows(con, "SELECT count(DISTINCT session_id) FROM agent_usage") == [(8,)]
        assert rows(con, "SELECT count(*) FROM runs") == [(8,)]


def test_a_refetch_replaces_a_sessions_agent_runs_and_zero_runs_replace_them_too(
    piper: SimulatedPiper, out_dir: Path
) -> None:
    rerun, emptied, kept = piper.dataset.session_ids[:3]
    load(piper, out_dir, [rerun, emptied, kept])
    before = len(served_runs(piper, rerun))
    piper.dataset.rerun(rerun)
    piper.dataset.set_events(emptied, {"session": {"session_id": emptied}, "runs": []})
    assert load(piper, out_dir, [rerun, emptied], refetch=True).ok
    for con in stores(out_dir):
        counted = dict(rows(con, "SELECT session_id, count(agent_run_id) FROM agent_usage GROUP BY 1"))
        assert counted == {rerun: before + 1, emptied: 0, kept: len(served_runs(piper, kept))}
        assert rows(con, "SELECT count(*) FROM agent_usage WHERE session_id = ?", [emptied]) == [(1,)]
        assert rows(con, "SELECT count(*), count(DISTINCT agent_run_id) FROM agent_usage WHERE session_id = ?",
                    [rerun]) == [(before + 1, before + 1)], "no duplicate and no stale agent run"
    database = store.connect(out_dir / store.DATABASE_FILE, read_only=True)
    parquet = open_analytics(out_dir)
    try:
        for con in (database, parquet.con):  # the re-run session keeps one run: its agent usage is counted once
            assert rows(con, "SELECT count(*), sum(agent_runs) FROM run_costs WHERE session_id = ?", [rerun]) == [
                (1, before + 1)]
            assert rows(con, "SELECT sum(agent_runs) FROM scenario_summary") == rows(
                con, "SELECT count(agent_run_id) FROM agent_usage")
            assert rows(con, "SELECT agent_runs, agent_cost_usd FROM run_costs WHERE session_id = ?", [emptied]) == [
                (0, 0.0)]
    finally:
        database.close()
        parquet.close()


def test_failed_events_fail_the_session_and_the_next_load_retries_it(piper: SimulatedPiper, out_dir: Path) -> None:
    broken, fine = piper.dataset.session_ids[:2]
    path = f"/v1/orgs/{piper.org_id}/responses/sessions/{quote(broken, safe='')}/events"
    piper.state.script_path(path, "503")
    first = load(piper, out_dir, [broken, fine])
    assert (first.status, first.outcomes["failed"], first.outcomes["loaded"]) == ("partial", 1, 1)
    assert first.failures[0][0] == broken and first.failures[0][1].startswith("agent usage: HTTP 503")
    for con in stores(out_dir):
        assert rows(con, "SELECT DISTINCT session_id FROM runs") == [(fine,)], "nothing of the failed session lands"
        assert rows(con, "SELECT DISTINCT session_id FROM agent_usage") == [(fine,)]
        assert rows(con, "SELECT outcome, http_status FROM fetch_log WHERE session_id = ?", [broken]) == [
            ("failed", 503)]
    second = load(piper, out_dir, [broken, fine])
    assert second.ok
    for con in stores(out_dir):
        assert rows(con, "SELECT count(DISTINCT session_id) FROM agent_usage") == [(2,)]


def test_an_unusable_events_payload_rejects_the_session_and_keeps_the_body(
    piper: SimulatedPiper, out_dir: Path
) -> None:
    session_id = piper.dataset.session_ids[0]
    piper.dataset.set_events(session_id, {"detail": "maintenance"})
    summary = load(piper, out_dir, [session_id])
    assert summary.outcomes["rejected"] == 1
    for con in stores(out_dir):
        assert rows(con, "SELECT reason, body FROM rejected_payloads") == [
            ("agent usage payload rejected: runs is missing", '{"detail":"maintenance"}')]
        assert rows(con, "SELECT count(*) FROM runs") == [(0,)]


def builder() -> ChunkBuilder:
    return ChunkBuilder(load_id="l", loaded_at=T0, part="p", org_id="o")


RUN = {"id": "run-1", "status": "passed", "turn_results": []}


@pytest.mark.parametrize("events, outcome, usage_rows", [
    (FetchResult("s", "ok", payload={"runs": [{"id": "a"}, {"id": "b"}]}, attempts=1), "loaded", 2),
    (FetchResult("s", "not_found", http_status=404, attempts=1), "loaded", 0),
    (FetchResult("s", "failed", http_status=500, attempts=6, error="HTTP 500; gave up"), "failed", 0),
    (FetchResult("s", "rejected", body=b"{", http_status=200, attempts=2, error="not JSON"), "rejected", 0),
])
def test_how_the_events_decide_a_sessions_outcome(events: FetchResult, outcome: str, usage_rows: int) -> None:
    chunk = builder()
    chunk.record(FetchResult("s", "ok", payload=RUN, attempts=1, events=events))
    assert chunk.log_rows[0]["outcome"] == outcome
    assert chunk.log_rows[0]["attempts"] == 1 + events.attempts
    assert len(chunk.agent_usage_rows.get("s", [])) == usage_rows
    assert ("s" in chunk.flat_runs) == (outcome == "loaded"), "the run lands exactly when the session is loaded"
    if events.outcome == "not_found":
        assert "404" in str(chunk.log_rows[0]["error"])
    landed: dict[str, Any] = {}
    chunk.land(lambda part, tables: landed.update(tables))
    assert landed["agent_usage"].num_rows == usage_rows


@pytest.mark.parametrize("crash_at", ["fetching:20", "merge-uncommitted"])
def test_a_killed_load_with_agent_usage_converges_and_never_splits_a_session(
    piper: SimulatedPiper, tmp_path: Path, cli: Cli, crash_at: str
) -> None:
    from tests.test_crash_recovery import run_cli_process
    from tests.test_parquet_invariant import assert_parquet_equals_duckdb
    from warehouse.crash import CRASH_EXIT_STATUS

    piper.dataset.complete_pending()
    ids = piper.dataset.session_ids
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    args = ("--with-agent-usage", "--chunk-size", "8")
    assert cli(*load_args(piper, reference, *args), *ids).code == 0
    killed = run_cli_process([*load_args(piper, crashed, *args), *ids], crash_at=crash_at)
    assert killed.returncode == CRASH_EXIT_STATUS, killed.stderr
    rerun = run_cli_process([*load_args(piper, crashed, *args), *ids])
    assert rerun.returncode == 0, rerun.stderr
    usage = "SELECT * EXCLUDE (_load_id, _loaded_at) FROM agent_usage ORDER BY session_id, agent_run_id"
    for crashed_con, reference_con in zip(stores(crashed), stores(reference), strict=True):
        assert rows(crashed_con, usage) == rows(reference_con, usage)
        assert rows(crashed_con, "SELECT DISTINCT session_id FROM runs ORDER BY 1") == rows(
            crashed_con, "SELECT DISTINCT session_id FROM agent_usage ORDER BY 1"), "a run never lacks its usage"
    assert_parquet_equals_duckdb(crashed)
