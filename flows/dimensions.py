"""Keep the dimensions current for what a load lands: the sessions' info in, the scenarios' definitions out.

* :func:`stored_session_info`: the stored `sessions` rows of the sessions a load fetches, as the
  `SessionInfo` the flatten fills `runs.agent_id`, `agent_name` and `is_test` from. A sync passes its own
  listing on top (`flows.pipeline.run_load(session_info=...)`).
* :func:`refresh_scenarios`: after the runs are fetched, for every scenario the landed runs reference,
  compare the stored `scenarios` row with the scenarios list, fetch the detail of the new and the moved
  ones (`updated_at` differs) and land `scenarios` and `scenario_criteria` as one part of the load, so
  that the commit that makes the runs current makes their definitions current too.

A scenario that cannot be refreshed never stops or fails the load: its runs are loaded, it is
reported (a warning and the summary's counts), and it is tried again by the next load that lands a run
of it, because it is still missing or still moved. The load's status (`flows.pipeline.load_status`)
counts sessions only, so a scenario problem alone leaves a load `succeeded`: a scenario deleted from
Piper whose runs are still served would otherwise make every later load fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from connector.client import PiperClient
from connector.errors import PiperListFailed, PiperStopLoad
from connector.urls import session_id_problem
from flows.chunks import ChunkSink, log_table
from schemas.flatten import SessionInfo
from schemas.scenarios import (
    FlatScenario,
    ListedScenario,
    PayloadRejected,
    build_scenario_tables,
    flatten_scenario,
    read_listed_scenario,
)
from warehouse.crash import crash_point
from warehouse.load import LoadTransaction

SCENARIOS_PART = "scenarios"
"""The part name of a load's scenario dimensions (one part per load)."""
LIST_PAGE_SIZE = 500
SESSION_INFO_COLUMNS = ("agent_id", "agent_name", "is_test")
WARNINGS_SHOWN = 5


@dataclass
class ScenarioReport:
    """What one load's scenario refresh did; plain values, small enough to pass between Prefect tasks."""

    referenced: int = 0  # scenarios of the runs the load landed
    fetched: int = 0  # details fetched and landed (new, moved, or not in the list)
    unchanged: int = 0  # stored and not moved since: not fetched again
    list_pages: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (scenario id, or "" for all, reason)

    @classmethod
    def skipped(cls, referenced: Iterable[str], reason: str) -> ScenarioReport:
        """The report of a refresh that sent nothing (the load stopped): every referenced scenario waits."""
        count = len(set(referenced))
        return cls(referenced=count, problems=[("", f"{count} not refreshed: {reason}")] if count else [])

    def warnings(self) -> list[str]:
        """One line per problem (the first few, then how many more): what the load summary prints."""
        lines = [f"scenario {subject}: {reason}; its runs are loaded, the next load tries again" if subject
                 else f"scenarios: {reason}" for subject, reason in self.problems[:WARNINGS_SHOWN]]
        if len(self.problems) > WARNINGS_SHOWN:
            lines.append(f"... and {len(self.problems) - WARNINGS_SHOWN} more scenarios not refreshed")
        return lines

    def line(self) -> str:
        return (f"{self.referenced} scenarios: {self.fetched} fetched, {self.unchanged} unchanged, "
                f"{len(self.problems)} not refreshed")


def stored_session_info(load: LoadTransaction, session_ids: Iterable[str]) -> dict[str, SessionInfo]:
    """The stored `sessions` rows of these sessions (those never listed are absent), read through the load."""
    rows = load.stored_dimension("sessions", session_ids, SESSION_INFO_COLUMNS)
    return {session_id: SessionInfo.from_row(row) for session_id, row in rows.items()}


def session_info_for(
    load: LoadTransaction, session_ids: Iterable[str], given: Mapping[str, SessionInfo] | None
) -> dict[str, SessionInfo]:
    """The info of each session: `given` (a sync's fresh listing) where it has the session, else the stored row."""
    given = given or {}
    # An id no request can carry (not UTF-8, ...) is rejected, never stored: and DuckDB cannot take it as a value.
    info = stored_session_info(load, (s for s in session_ids if s not in given and session_id_problem(s) is None))
    return {**info, **given}


def stored_scenarios(load: LoadTransaction, scenario_ids: Iterable[str]) -> dict[str, datetime | None]:
    """scenario_id -> the stored `updated_at` of these scenarios (those never stored are absent)."""
    rows = load.stored_dimension("scenarios", scenario_ids, ("updated_at",))
    return {scenario_id: at if isinstance(at := row["updated_at"], datetime) else None
            for scenario_id, row in rows.items()}


def scenarios_to_fetch(
    referenced: Iterable[str], stored: Mapping[str, datetime | None], listed: Mapping[str, ListedScenario] | None
) -> list[str]:
    """The scenarios whose detail a load fetches: not stored yet, or moved since (pure).

    Moved: the list shows another `updated_at` than the stored row, or none. A scenario the list lacks
    is fetched too (the list may have changed while it was paged; a deleted scenario answers 404). With
    no list at all (`None`: it could not be read) only the scenarios never stored are fetched.
    """
    wanted = []
    for scenario_id in sorted(set(referenced)):
        if scenario_id not in stored:
            wanted.append(scenario_id)
        elif listed is not None:
            entry = listed.get(scenario_id)
            if entry is None or entry.updated_at is None or entry.updated_at != stored[scenario_id]:
                wanted.append(scenario_id)
    return wanted


async def list_scenarios(client: PiperClient, report: ScenarioReport) -> dict[str, ListedScenario]:
    """Every item of the scenarios list, by id, paged until a short page; unusable items are reported.

    Raises `PiperListFailed` when a page cannot be read.
    """
    listed: dict[str, ListedScenario] = {}
    offset = 0
    while True:
        page = await client.list_scenarios_page(limit=LIST_PAGE_SIZE, offset=offset)
        report.list_pages += 1
        new = 0
        for pos, item in enumerate(page.items):
            try:
                entry = read_listed_scenario(item, f"scenarios list item {offset + pos}")
            except PayloadRejected as exc:
                report.problems.append(("", exc.reason))
                continue
            new += entry.scenario_id not in listed
            listed[entry.scenario_id] = entry
        # A short page ends the list; so does a page of nothing new (an API that ignores offset).
        if len(page.items) < LIST_PAGE_SIZE or not new:
            return listed
        offset += len(page.items)


async def fetch_scenarios(client: PiperClient, scenario_ids: list[str], report: ScenarioReport) -> list[FlatScenario]:
    """The flattened details of these scenarios, at most `client.concurrency` at once; failures reported.

    A stop of the client (token refused, circuit breaker) leaves the scenarios not fetched yet reported.
    """
    gate = asyncio.Semaphore(client.concurrency)

    async def one(scenario_id: str) -> FlatScenario | None:
        try:
            async with gate:
                result = await client.fetch_scenario(scenario_id)
        except PiperStopLoad as exc:
            report.problems.append((scenario_id, f"not fetched: {exc}"))
            return None
        if result.outcome == "not_found":
            report.problems.append((scenario_id, "the detail answered 404 (deleted?)"))
            return None
        if result.outcome != "ok":
            report.problems.append((scenario_id, f"the detail could not be fetched: {result.error or result.outcome}"))
            return None
        try:
            return flatten_scenario(result.payload, scenario_id=scenario_id)
        except PayloadRejected as exc:
            report.problems.append((scenario_id, f"the detail was rejected: {exc.reason}"))
            return None

    found = await asyncio.gather(*(one(scenario_id) for scenario_id in scenario_ids))
    return [flat for flat in found if flat is not None]


async def refresh_scenarios(
    client: PiperClient, referenced: Iterable[str], stored: Mapping[str, datetime | None], sink: ChunkSink,
    *, load_id: str, loaded_at: datetime,
) -> ScenarioReport:
    """List the scenarios, fetch the new and moved ones of `referenced`, land them as the part `scenarios`.

    `stored`: the stored `updated_at` of the referenced scenarios (`stored_scenarios`). Sends no
    request when nothing is referenced. A stop of the client (token refused, circuit breaker) ends the
    refresh: what was fetched before lands, the rest is reported.
    """
    wanted_ids = sorted(set(referenced))
    report = ScenarioReport(referenced=len(wanted_ids))
    if not wanted_ids:
        return report
    listed: dict[str, ListedScenario] | None
    try:
        listed = await list_scenarios(client, report)
    except PiperListFailed as exc:
        listed = None
        report.problems.append(("", f"{exc}; stored scenarios are kept as they are"))
    except PiperStopLoad as exc:
        return ScenarioReport.skipped(wanted_ids, str(exc))
    to_fetch = scenarios_to_fetch(wanted_ids, stored, listed)
    report.unchanged = len(wanted_ids) - len(to_fetch)
    flats = await fetch_scenarios(client, to_fetch, report)
    report.fetched = len(flats)
    if flats:
        # An empty `fetch_log` part, landed last, marks the part complete: a crash after it keeps it.
        tables = {**build_scenario_tables(flats, load_id=load_id, loaded_at=loaded_at), "fetch_log": log_table([])}
        sink(SCENARIOS_PART, tables)
        crash_point("scenarios-landed")
    return report
