"""A load keeps the scenario dimensions of the runs it lands current, and fills the runs' agent columns.

Against the simulated API over loopback; requests are counted from `FakePiper.requests`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from connector.fake_api._build import Scenario
from connector.fake_api._views import session_item
from flows.dimensions import scenarios_to_fetch
from flows.pipeline import run_load
from flows.settings import LoadSettings
from schemas.flatten import SessionInfo
from schemas.scenarios import ListedScenario
from schemas.tables import SESSIONS
from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, load_args, query
from warehouse import store, views
from warehouse.load import OutputFormat, open_load
from warehouse.records import LoadCounts

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def stores(out_dir: Path, format: OutputFormat = "both") -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to each store the format writes, closed after use."""
    if format != "parquet":
        con = store.connect(out_dir / store.DATABASE_FILE, read_only=True)
        try:
            yield con
        finally:
            con.close()
    if format != "duckdb":
        con = views.open_current_state(out_dir / "parquet")
        try:
            yield con
        finally:
            con.close()


def listing(piper: SimulatedPiper, session_ids: list[str]) -> dict[str, SessionInfo]:
    """What the simulated sessions list says about these sessions, as a sync passes it on."""
    return {sid: SessionInfo.from_row(session_item(piper.dataset, sid)) for sid in session_ids}


def detail_requests(piper: SimulatedPiper, scenario_id: str | None = None) -> int:
    prefix = f"/v1/orgs/{piper.org_id}/scenarios/"
    return sum(1 for r in piper.state.requests if r.raw_path.startswith(prefix) and r.session_id is None
               and "/" not in r.raw_path[len(prefix):] and r.raw_path[len(prefix):] not in ("", "runs")
               and (scenario_id is None or r.raw_path == prefix + scenario_id))


def list_requests(piper: SimulatedPiper) -> int:
    return sum(1 for r in piper.state.requests if r.raw_path == f"/v1/orgs/{piper.org_id}/scenarios")


UNJOINED = {
    "runs without a scenarios row": "SELECT count(*) FROM runs r ANTI JOIN scenarios s USING (scenario_id)",
    "criteria results without a scenario_criteria row": (
        "SELECT count(*) FROM criteria_results c JOIN runs r USING (run_id) "
        "ANTI JOIN scenario_criteria d ON d.scenario_id = r.scenario_id AND d.criteria_id = c.criteria_id"),
    "runs without a sessions row": "SELECT count(*) FROM runs ANTI JOIN sessions USING (session_id)",
    "runs whose agent is not their session's": (
        "SELECT count(*) FROM runs r JOIN sessions s USING (session_id) "
        "WHERE r.agent_id IS DISTINCT FROM s.agent_id OR r.is_test IS DISTINCT FROM s.is_test"),
}


def land_sessions(out_dir: Path, piper: SimulatedPiper, session_ids: list[str], format: OutputFormat) -> None:
    """The sessions rows a sync would have landed for these sessions, in a load of their own."""
    with open_load(out_dir, format=format, now=T0) as load:
        rows = [{
            **{k: v for k, v in session_item(piper.dataset, sid).items() if k != "id"},
            "session_id": sid, "_load_id": load.load_id, "_loaded_at": T0,
            "created_at": None, "updated_at": None,
        } for sid in session_ids]
        load.land("sessions", {"sessions": pa.Table.from_pylist(rows, schema=SESSIONS)})
        load.commit("succeeded", LoadCounts(), {})


@pytest.mark.parametrize("format", ["both", "parquet", "duckdb"])
def test_dimensions_join_every_fact_row_after_a_load(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, format: OutputFormat
) -> None:
    ids = piper.dataset.session_ids
    land_sessions(out_dir, piper, ids, format)  # as a sync would have; `load` reads them back
    result = cli(*load_args(piper, out_dir, "--format", format, *ids))
    assert result.code == 0, result.stderr
    referenced = {piper.dataset.header(sid).scenario.id for sid in ids}
    assert f", {len(referenced)} scenario definitions written to" in result.stdout
    assert detail_requests(piper) == len(referenced) and list_requests(piper) == 1
    for con in stores(out_dir, format):
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (len(ids),)
        for what, sql in UNJOINED.items():
            assert con.execute(sql).fetchone() == (0,), what
        agents = dict(con.execute("SELECT session_id, agent_name FROM runs").fetchall())
        assert agents == {sid: piper.dataset.header(sid).agent.name for sid in ids}
        assert con.execute("SELECT count(*) FROM scenarios").fetchone() == (len(referenced),)
        tags = con.execute("SELECT tags FROM scenarios WHERE scenario_id = ?", [sorted(referenced)[0]]).fetchone()
        assert tags is not None and tags[0] == list(piper.dataset.scenario(sorted(referenced)[0]).tags)  # type: ignore[union-attr]


def test_a_sync_passes_its_listing_through_session_info(piper: SimulatedPiper, out_dir: Path) -> None:
    ids = piper.dataset.session_ids[:12]
    settings = LoadSettings(org_id=piper.org_id, base_url=piper.base_url, out_dir=out_dir)
    given = listing(piper, ids[:8])
    summary = run_load(ids, settings, CANARY_TOKEN, session_info=given)
    assert summary.ok
    rows = dict((sid, (agent, test)) for sid, agent, test in query(
        out_dir, "SELECT session_id, agent_id, is_test FROM runs"))
    assert rows == {sid: (given[sid].agent_id, given[sid].is_test) if sid in given else (None, None) for sid in ids}
    assert any(test for _, test in rows.values()) or not any(info.is_test for info in given.values())


def revised(scenario: Scenario) -> Scenario:
    """The scenario edited in Piper: a later updated_at, its first turn's last criterion gone, questions reworded."""
    first, *rest = scenario.turns
    kept = first.criteria[:-1] if len(first.criteria) > 1 else first.criteria
    turns = (dataclasses.replace(first, criteria=tuple(dataclasses.replace(c, question=f"{c.question} (v2)")
                                                        for c in kept), required=not first.required), *rest)
    updated = datetime.fromisoformat(scenario.updated_at) + timedelta(days=1)
    return dataclasses.replace(scenario, turns=turns, updated_at=updated.strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_a_scenario_is_fetched_once_and_again_when_its_updated_at_moves(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, *ids[:10])).code == 0
    scenario_id = piper.dataset.header(ids[0]).scenario.id
    assert detail_requests(piper, scenario_id) == 1

    assert cli(*load_args(piper, out_dir, "--refetch", *ids[:10])).code == 0  # nothing moved: no detail
    assert detail_requests(piper, scenario_id) == 1 and list_requests(piper) == 2

    before = piper.dataset.scenario(scenario_id)
    assert before is not None
    after = revised(before)
    piper.dataset.replace_scenario(after)
    assert cli(*load_args(piper, out_dir, "--refetch", ids[0])).code == 0
    assert detail_requests(piper, scenario_id) == 2, "moved: fetched again"
    expected = sorted((c.id, c.question, t.required) for t in after.turns for c in t.criteria)
    for con in stores(out_dir):
        rows = con.execute("SELECT criteria_id, question, required FROM scenario_criteria WHERE scenario_id = ? "
                           "ORDER BY 1", [scenario_id]).fetchall()
        assert rows == expected, "the new definition replaced every criterion of the old one"
        assert con.execute("SELECT updated_at FROM scenarios WHERE scenario_id = ?", [scenario_id]).fetchone() == (
            datetime.fromisoformat(after.updated_at),)
        others = con.execute("SELECT count(DISTINCT scenario_id) FROM scenarios").fetchone()
        assert others is not None and others[0] > 1, "the other scenarios stay"

    assert cli(*load_args(piper, out_dir, "--refetch", ids[0])).code == 0
    assert detail_requests(piper, scenario_id) == 2, "fetched once per version"


def test_a_failing_scenario_detail_leaves_the_runs_loaded_and_is_reported(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids[:10]
    scenario_id = piper.dataset.header(ids[0]).scenario.id
    piper.state.script_path(f"/v1/orgs/{piper.org_id}/scenarios/{scenario_id}", "500")
    result = cli(*load_args(piper, out_dir, "--max-retries", "0", *ids))
    assert result.code == 0, "a scenario problem leaves the load's status alone"
    assert (f"piper-etl load: warning: scenario {scenario_id}: the detail could not be fetched: HTTP 500; "
            "gave up after 1 attempts; its runs are loaded, the next load tries again") in result.stderr
    for con in stores(out_dir):
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (len(ids),)
        assert con.execute("SELECT count(*) FROM scenarios WHERE scenario_id = ?", [scenario_id]).fetchone() == (0,)
        assert con.execute("SELECT status FROM loads").fetchall() == [("succeeded",)]

    again = cli(*load_args(piper, out_dir, "--refetch", ids[0]))
    assert again.code == 0 and "warning" not in again.stderr
    assert query(out_dir, "SELECT count(*) FROM scenarios WHERE scenario_id = ?", [scenario_id]) == [(1,)]


def test_an_unreadable_scenarios_list_still_fetches_the_new_scenarios(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids[:6]
    piper.state.script_path(f"/v1/orgs/{piper.org_id}/scenarios", "400")
    result = cli(*load_args(piper, out_dir, *ids))
    assert result.code == 0
    assert "piper-etl load: warning: scenarios: cannot read the scenarios list page (offset 0, limit 500): HTTP 400" \
        in result.stderr
    referenced = {piper.dataset.header(sid).scenario.id for sid in ids}
    assert query(out_dir, "SELECT count(*) FROM scenarios") == [(len(referenced),)]


def test_a_load_that_lands_no_run_sends_no_scenario_request(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    assert cli(*load_args(piper, out_dir, "no-such-session")).code == 0
    assert list_requests(piper) == 0 and detail_requests(piper) == 0


def test_which_scenarios_are_fetched() -> None:
    at = datetime(2026, 10, 1, tzinfo=UTC)
    stored = {"same": at, "moved": at, "unlisted": at, "undated": at}
    listed = {"same": ListedScenario("same", at), "moved": ListedScenario("moved", at + timedelta(seconds=1)),
              "new": ListedScenario("new", at), "undated": ListedScenario("undated", None)}
    referenced = ["same", "moved", "new", "unlisted", "undated", "new"]
    assert scenarios_to_fetch(referenced, stored, listed) == ["moved", "new", "undated", "unlisted"]
    assert scenarios_to_fetch(referenced, stored, None) == ["new"], "no list: only what was never stored"
