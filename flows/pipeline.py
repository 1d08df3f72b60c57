"""The load, as plain functions over one load transaction: plan, fetch and hand chunks over, commit.

`run_load` chains them for the command line; `flows.prefect_flow` runs the same steps as a flow. How
chunks are stored, merged, recovered and published is the business of `warehouse.load`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from connector.backoff import BackoffGate
from connector.client import PiperClient
from connector.errors import PiperConfigError
from connector.retry import CircuitBreaker, RetryPolicy
from connector.urls import session_id_problem
from flows import dimensions
from flows.chunks import ChunkReport, ChunkSink, OnSession, StreamLander, log_row, log_table
from flows.dimensions import ScenarioReport
from flows.settings import LoadSettings
from schemas.flatten import SessionInfo
from warehouse.crash import crash_point
from warehouse.load import LoadTransaction, open_load
from warehouse.records import LoadCounts

logger = logging.getLogger(__name__)


@dataclass
class LoadPlan:
    """What a load will do: which sessions to fetch, which to skip, under which load id."""

    load_id: str
    started_at: datetime
    requested: list[str]
    to_fetch: list[str]
    skipped: dict[str, str]  # session_id -> run_id already stored with a final status

    def slices(self, size: int) -> list[list[str]]:
        return [self.to_fetch[i : i + size] for i in range(0, len(self.to_fetch), size)]


@dataclass
class LoadSummary:
    """The outcome of a whole load, as recorded in the `loads` table."""

    load_id: str
    status: str
    out_dir: Path | str  # str: the object-store URL the Parquet files landed in
    outcomes: Counter[str]
    rows: Counter[str]
    started_at: datetime
    finished_at: datetime
    stop_message: str | None = None
    token_refused: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verdicts_markdown: str | None = None  # the warehouse's verdict summary, when the commit was asked for it
    scenarios: ScenarioReport | None = None  # the refresh of the scenario dimensions of the runs landed

    @property
    def requested(self) -> int:
        return sum(self.outcomes.values())

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def line(self) -> str:
        o = self.outcomes
        seconds = (self.finished_at - self.started_at).total_seconds()
        return (
            f"load {self.load_id} {self.status}: {self.requested} sessions: {o['loaded']} loaded, "
            f"{o['skipped']} skipped, {o['not_found']} not found, {o['failed']} failed, {o['rejected']} rejected; "
            f"{self.rows['runs']} runs, {self.rows['turns']} turns, {self.rows['criteria_results']} criteria results"
            f"{self._agent_runs_written()}{self._scenarios_written()} written to {self.out_dir} in {seconds:.1f} s"
        )


    def _agent_runs_written(self) -> str:
        agent_runs = self.rows["agent_usage"]  # counted only by loads with agent usage
        return f", {agent_runs} agent run{'' if agent_runs == 1 else 's'}" if agent_runs else ""

    def _scenarios_written(self) -> str:
        fetched = self.scenarios.fetched if self.scenarios is not None else 0
        return f", {fetched} scenario definition{'' if fetched == 1 else 's'}" if fetched else ""


def unique_session_ids(session_ids: Iterable[str]) -> list[str]:
    """Session ids in first-seen order, each once."""
    return list(dict.fromkeys(session_ids))


def plan_load(
    load: LoadTransaction, session_ids: Iterable[str], settings: LoadSettings, *, refetch_ids: Collection[str] = (),
) -> LoadPlan:
    """Deduplicate the ids and, unless `refetch`, set aside sessions already stored with a final run.

    With `with_agent_usage`, a session is set aside only when its agent usage is stored too.

    `refetch_ids`: sessions fetched even when their stored run is final (a sync's sessions whose listing
    says they changed since).
    """
    requested = unique_session_ids(session_ids)
    refetch = set(refetch_ids)
    # ids with a problem are rejected, never stored; those to refetch are not looked up
    storable = [s for s in requested if session_id_problem(s) is None and s not in refetch]
    skipped = {} if settings.refetch else load.stored_final_runs(storable)
    if settings.with_agent_usage and skipped:  # a final run stored without its agent usage is fetched again
        with_usage = load.stored_dimension("agent_usage", skipped, ("session_id",))
        skipped = {session: run for session, run in skipped.items() if session in with_usage}
    return LoadPlan(load.load_id, load.started_at, requested, [s for s in requested if s not in skipped], skipped)


def land_skipped(sink: ChunkSink, plan: LoadPlan) -> ChunkReport:
    """Record the sessions skipped because their stored run is final."""
    report = ChunkReport("skipped", outcomes=Counter({"skipped": len(plan.skipped)}))
    if plan.skipped:
        sink(report.part, {"fetch_log": log_table([
            log_row(plan.load_id, session_id, "skipped", fetched_at=plan.started_at, run_id=run_id)
            for session_id, run_id in plan.skipped.items()
        ])})
    return report


def land_unsent(sink: ChunkSink, plan: LoadPlan, later: list[list[str]], reason: str) -> ChunkReport:
    """Record the sessions never sent because the load stopped as `failed`, so none goes missing."""
    now = datetime.now(UTC)
    rows = [log_row(plan.load_id, s, "failed", fetched_at=now, error=reason) for chunk in later for s in chunk]
    if rows:
        sink("unsent", {"fetch_log": log_table(rows)})
    return ChunkReport("unsent", outcomes=Counter({"failed": len(rows)}))


async def fetch_and_land(
    client: PiperClient, session_ids: Sequence[str], settings: LoadSettings, *, sink: ChunkSink, stream: str,
    load_id: str, loaded_at: datetime, on_session: OnSession | None = None,
    session_info: Mapping[str, SessionInfo] | None = None,
) -> list[ChunkReport]:
    """Fetch sessions in one stream of requests and hand them to `sink` chunk by chunk (parts `<stream>-0001`, ...).

    Requests never wait for a chunk boundary: a full chunk lands in a worker thread while fetching goes
    on into the next, and at most one chunk lands at a time, so at most two are in memory whatever the
    number of sessions. Every session ends in a report, including those never sent after a stop.
    With `settings.with_agent_usage`, each session's events are fetched right after its run, by the same
    worker, and its `agent_usage` rows land in the part of its run (`ChunkBuilder` says how outcomes combine).
    `session_info`: what the sessions list says about the sessions (`runs.agent_id`, `agent_name`,
    `is_test`); a session it lacks has null agent columns.
    """
    lander = StreamLander(settings.chunk_size, sink, stream=stream, load_id=load_id, loaded_at=loaded_at,
                           org_id=client.org_id, on_session=on_session, expected=len(session_ids),
                           session_info=session_info)
    batch = await client.fetch_many(session_ids, on_result=lander.record, with_events=settings.with_agent_usage)
    crash_point("fetched")
    return await lander.finish(batch.stopped)


def referenced_scenarios(reports: Sequence[ChunkReport]) -> list[str]:
    """The scenarios of the runs the chunks landed, each once, sorted."""
    return sorted(set().union(*(report.scenario_ids for report in reports)))


async def land_scenarios(
    client: PiperClient, load: LoadTransaction, reports: Sequence[ChunkReport]
) -> ScenarioReport:
    """Refresh the scenario dimensions of the runs landed (`flows.dimensions`), as a part of this load.

    After a stop (the token refused, the circuit breaker) nothing is sent: the scenarios wait for the next load.
    """
    referenced = referenced_scenarios(reports)
    stop = next((report.stop_message for report in reports if report.stop_message), None)
    if stop is not None:
        return ScenarioReport.skipped(referenced, "the load stopped")
    return await dimensions.refresh_scenarios(client, referenced, dimensions.stored_scenarios(load, referenced),
                                              load.land, load_id=load.load_id, loaded_at=load.started_at)


def load_status(reports: Sequence[ChunkReport]) -> str:
    outcomes: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report.outcomes)
    if any(report.stop_message for report in reports):
        return "aborted"
    return "partial" if outcomes["failed"] or outcomes["rejected"] else "succeeded"


def commit_load(
    load: LoadTransaction, plan: LoadPlan, settings: LoadSettings, reports: Sequence[ChunkReport],
    *, summarize: bool = False, scenarios: ScenarioReport | None = None,
) -> LoadSummary:
    """Commit the load with its `loads` row and publish; the summary of what it did.

    `scenarios`: what the refresh of the scenario dimensions did; its problems become warnings and
    never change the load's status (`flows.dimensions` says why).
    """
    counts = LoadCounts()
    failures: list[tuple[str, str]] = []
    stop_message, token_refused = None, False
    for report in reports:
        counts.add(LoadCounts(report.outcomes, report.rows))
        failures.extend(report.failures)
        stop_message = stop_message or report.stop_message
        token_refused = token_refused or report.token_refused
    try:
        prices = settings.price_list()
    except PiperConfigError as exc:  # the file changed since the load began: the load stands, prices wait
        logger.warning("judge prices not updated: %s", exc)
        prices = None
    status = load_status(reports)
    committed = load.commit(status, counts, settings.as_parameters(), prices=prices, summarize=summarize)
    return LoadSummary(
        load_id=plan.load_id, status=status, out_dir=settings.out_dir, outcomes=counts.outcomes, rows=counts.rows,
        started_at=plan.started_at, finished_at=committed.load_row["finished_at"],  # type: ignore[arg-type]
        stop_message=stop_message, token_refused=token_refused, failures=failures[:5],
        warnings=load_warnings(counts.outcomes, settings) + (scenarios.warnings() if scenarios else []),
        verdicts_markdown=committed.verdicts_markdown, scenarios=scenarios,
    )


def load_warnings(outcomes: Counter[str], settings: LoadSettings) -> list[str]:
    """Hints for outcomes that point at a setting rather than at the sessions."""
    not_found = outcomes["not_found"]
    if not_found and not outcomes["loaded"] and not outcomes["skipped"]:  # a stored run proves the org and URL
        what = "the one session fetched was" if not_found == 1 else f"every one of the {not_found} sessions fetched was"
        return [
            f"{what} not found (404): the org id {settings.org_id!r} or the base URL {settings.base_url!r} "
            "is probably wrong"
        ]
    return []


def make_client(
    settings: LoadSettings, token: str, transport: httpx.AsyncBaseTransport | None = None, *,
    concurrency: int | None = None, gate: BackoffGate | None = None,
) -> PiperClient:
    """The load's client; `concurrency`: its requests in flight instead of `settings.concurrency` (a Dask task's);
    `gate`: the 429 back-off it shares (a Dask task's, `flows/backoff.py`), else one of its own."""
    return PiperClient(
        base_url=settings.base_url,
        org_id=settings.org_id,
        token=token,
        concurrency=concurrency or settings.concurrency,
        retry=RetryPolicy(max_retries=settings.max_retries),
        transport=transport,
        http_client=settings.http_client,
        circuit_breaker=CircuitBreaker(failures=n, seconds=settings.circuit_breaker_seconds)
        if (n := settings.max_consecutive_failures) else None,
        gate=gate,
    )


async def run_load_async(
    session_ids: Iterable[str],
    settings: LoadSettings,
    token: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_session: OnSession | None = None,
    on_plan: Callable[[LoadPlan], None] | None = None,
    now: datetime | None = None,
    session_info: Mapping[str, SessionInfo] | None = None,
) -> LoadSummary:
    """The whole load without Prefect: plan, one stream of requests over all sessions, scenarios, commit.

    `now`: the load's start time, as a seam for tests of clock steps (default: the clock).
    `session_info`: what a sessions listing says about some of the sessions (a sync passes its listing);
    for the others the stored `sessions` rows are used (`flows.dimensions.session_info_for`).
    """
    client = make_client(settings, token, transport)  # validates the settings before any work
    ids = unique_session_ids(session_ids)
    with open_load(settings.state_dir, format=settings.output, lock_timeout=settings.lock_timeout,
                   landing_url=settings.out_url, database=settings.database,
                   storage_version=settings.duckdb_storage_version,
                   expected_sessions=len(ids), now=now) as load:
        plan = plan_load(load, ids, settings)
        if on_plan is not None:
            on_plan(plan)
        async with client:
            reports, scenarios = await land_planned(load, client, plan, settings, on_session=on_session,
                                                    session_info=session_info)
        return commit_load(load, plan, settings, reports, scenarios=scenarios)


async def land_planned(
    load: LoadTransaction, client: PiperClient, plan: LoadPlan, settings: LoadSettings, *,
    on_session: OnSession | None = None, session_info: Mapping[str, SessionInfo] | None = None,
) -> tuple[list[ChunkReport], ScenarioReport]:
    """The local engine's fetch: the skipped sessions recorded, one stream of requests over the rest, then
    the scenario definitions of the runs landed. `session_info`: see `run_load_async`.
    """
    reports = [land_skipped(load.land, plan)]
    info = dimensions.session_info_for(load, plan.to_fetch, session_info)
    reports += await fetch_and_land(client, plan.to_fetch, settings, sink=load.land, stream="main",
                                    load_id=plan.load_id, loaded_at=plan.started_at, on_session=on_session,
                                    session_info=info)
    return reports, await land_scenarios(client, load, reports)


@contextmanager
def fewer_gc_passes(first_threshold: int = 100_000) -> Iterator[None]:
    """Wake Python's cycle collector less often while a load runs; restored afterwards.

    A load allocates millions of small objects that hold no reference cycles, yet every 700 allocations
    (the default) wake the collector to walk the young ones: about a fifth of the flatten's CPU
    (docs/performance.md, flatten). Objects that exist before the load are frozen out of the walks.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(first_threshold, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def run_load(
    session_ids: Iterable[str],
    settings: LoadSettings,
    token: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_session: OnSession | None = None,
    on_plan: Callable[[LoadPlan], None] | None = None,
    now: datetime | None = None,
    session_info: Mapping[str, SessionInfo] | None = None,
) -> LoadSummary:
    """Run a whole load in this process with no orchestration (the CLI's default path)."""
    with fewer_gc_passes():
        return asyncio.run(run_load_async(session_ids, settings, token, transport=transport, on_session=on_session,
                                          on_plan=on_plan, now=now, session_info=session_info))
