"""A sync: list the sessions, queue those worth fetching, and load them in one load with its `sync_state` row.

What a sync queues, among the listed sessions with a scenario run (`scenario_run_status` not null)
created within `--since`/`--until`, compared with the stored `sessions` row and the stored run:

* **new**: neither a `sessions` row nor a run is stored;
* **unfinished**: the stored run is not final; every such stored run is queued by every sync, listed
  or not (and whatever the bounds);
* **updated**: `updated_at` differs from the stored `sessions` row's, or the list item could not be read
  (its final run is fetched again, through `plan_load`'s `refetch_ids`);
* **without agent usage** (only with `with_agent_usage`): the stored run is final, but the session's agent
  usage was never stored (`agent_usage`), so that a sync with the flag fills it in for what it lists;
* a session stored by `piper-etl load` but never listed (a final run, no `sessions` row) is fetched
  again only when its `updated_at` is more than `SYNC_OVERLAP` later than the stored run's
  `completed_at` (else `started_at`; both by the API's clock, as `updated_at` is), or either is
  unknown; either way it gets its `sessions` row.

Sessions without a scenario run are not fetched. A `sessions` row lands for every listed session
with a run that is new or whose listing changed, except a queued session whose fetch did not end
`loaded`, `rejected` or `skipped`: with no new row, the next sync queues it again.

The watermark (`sync_state.watermark_after`, on `created_at`) is the newest `created_at` listed, and
only moves in the commit of the load that covers it. It stays where it was after a bounded sync
(`since`/`until`: a backfill proves nothing outside its range) or a listing that could not be proven
complete, and it never passes a queued, listed session whose fetch `failed` (so the next sync reads
down to it again); an unknown `created_at` among those clears it (the next sync reads everything).
The next sync stops listing, if the list is newest first, below the watermark minus `SYNC_OVERLAP`
(`flows.discovery`); `full_scan` reads the whole list.

The `sessions` and `sync_state` rows land as the part `sync`, which has no `fetch_log` part: a load
that dies before its commit leaves the part incomplete, and recovery deletes it, so a recovered load
never moves the watermark.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow as pa

from connector.client import PiperClient
from flows.chunks import ChunkReport, OnSession
from flows.dimensions import ScenarioReport
from flows.discovery import OVERLAP, PAGE_SIZE, Discovery, ListedPage, discover
from flows.pipeline import (
    LoadPlan,
    LoadSummary,
    commit_load,
    fewer_gc_passes,
    land_planned,
    load_status,
    make_client,
    plan_load,
)
from flows.settings import LoadSettings, SyncOptions
from schemas.coerce import PayloadRejected
from schemas.flatten import SessionInfo
from schemas.listing import ListedSession, listed_session, same_listing, sessions_table
from schemas.tables import SYNC_STATE
from warehouse import store, sync_reads
from warehouse.crash import crash_point
from warehouse.load import LoadTransaction, open_load

logger = logging.getLogger(__name__)

SYNC_OVERLAP = timedelta(minutes=15)
"""How far below the watermark a sync keeps listing: sessions that appear late (clock skew between API
servers, a list that shows a new session a little after it was created) are still found."""
SYNC_PART = "sync"
STORED_OUTCOMES = frozenset({"loaded", "rejected", "skipped"})
"""Fetch outcomes after which a queued session's `sessions` row lands (the next sync compares with it)."""
SHOWN_IDS = 10


@dataclass
class SyncPlan:
    """What a sync will do: what it listed, which sessions it queues and why, which `sessions` rows it lands."""

    options: SyncOptions
    watermark_before: datetime | None
    discovery: Discovery
    queued: list[str]
    refetch: set[str]  # queued sessions whose stored final run is fetched again
    reasons: Counter[str]  # new, unfinished, updated, without agent usage
    rows: dict[str, ListedSession]  # listed sessions whose `sessions` row is new or changed
    problems: list[str] = field(default_factory=list)  # list items that could not be read (first few)

    @property
    def listed(self) -> int:
        return len(self.discovery.sessions)

    def session_info(self) -> dict[str, SessionInfo]:
        """What the listing says about each queued session's agent (the runs' agent columns)."""
        listed = self.discovery.sessions
        return {session_id: SessionInfo.from_row(row) for session_id in self.queued
                if session_id in listed and (row := listed[session_id].row) is not None}

    def describe(self) -> str:
        """One line: what was listed and queued (the dry run prints it, the summary line starts with it)."""
        r = self.reasons
        how = "the whole list" if self.discovery.read_to_end else "stopped below the watermark"
        return (f"listed {self.listed} sessions in {self.discovery.pages_read} pages ({how}); queued "
                f"{len(self.queued)}: {r['new']} new, {r['unfinished']} unfinished, {r['updated']} updated"
                + (f", {n} without agent usage" if (n := r["without agent usage"]) else "") + "; "
                f"{len(self.rows)} sessions rows new or changed; watermark {_shown(self.watermark_before)}")


@dataclass
class SyncSummary:
    """The outcome of a sync: its load, and its `sync_state` row."""

    load: LoadSummary
    plan: SyncPlan
    state: dict[str, object]

    @property
    def status(self) -> str:
        return str(self.state["status"])

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def line(self) -> str:
        before, after = self.state["watermark_before"], self.state["watermark_after"]
        return (f"sync {self.load.load_id} {self.status}: {self.plan.describe()} -> "
                f"{_shown(after if isinstance(after, datetime) else None)}"
                + ("" if after == before or after is None or before is None else " (moved)"))


def _shown(moment: datetime | None) -> str:
    return "none" if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stop_before(options: SyncOptions, watermark: datetime | None) -> datetime | None:
    """Below which `created_at` the listing may stop, if the order proves the rest older (None: read it all)."""
    if options.since is not None:
        return options.since  # a backfill reads its range whatever the watermark says
    if options.full_scan or watermark is None:
        return None
    return watermark - SYNC_OVERLAP


async def list_sessions(
    client: PiperClient, *, stop_before: datetime | None, page_size: int = PAGE_SIZE, overlap: int = OVERLAP
) -> Discovery:
    """Discover the org's sessions through the client's list pages."""
    async def fetch(offset: int, limit: int) -> ListedPage:
        page = await client.list_sessions_page(limit=limit, offset=offset)
        sessions: list[ListedSession] = []
        unusable: list[str] = []
        for index, item in enumerate(page.items):
            try:
                sessions.append(listed_session(item, f"sessions[{offset + index}]"))
            except PayloadRejected as exc:
                unusable.append(f"list item left out: {exc.reason}")
        return ListedPage(sessions, page.total, unusable)

    return await discover(fetch, stop_before=stop_before, page_size=page_size, overlap=overlap)


def plan_sync(
    discovery: Discovery,
    options: SyncOptions,
    watermark_before: datetime | None,
    *,
    stored_rows: Mapping[str, Mapping[str, object]],
    stored_runs: Mapping[str, sync_reads.StoredRun],
    unfinished: Iterable[str],
    without_agent_usage: Collection[str] = (),
) -> SyncPlan:
    """Queue the listed sessions that are new, unfinished or updated, and every unfinished stored run (module doc).

    `without_agent_usage`: listed sessions whose agent usage is not stored; those with a current final run
    are queued too (a sync with `with_agent_usage`).
    """
    queued: dict[str, None] = {}
    refetch: set[str] = set()
    reasons: Counter[str] = Counter()
    rows: dict[str, ListedSession] = {}
    for session_id, listed in discovery.sessions.items():
        if not listed.has_run or not options.in_bounds(listed.created_at):
            continue
        reason = _reason(listed, stored_rows.get(session_id), stored_runs.get(session_id))
        if reason is None and session_id in without_agent_usage:
            reason = "without agent usage"
        if reason is not None:
            queued[session_id] = None
            reasons[reason] += 1
            if reason == "updated":
                refetch.add(session_id)
        stored_row = stored_rows.get(session_id)
        if listed.row is not None and (stored_row is None or not same_listing(listed.row, dict(stored_row))):
            rows[session_id] = listed
    for session_id in unfinished:
        if session_id not in queued:
            queued[session_id] = None
            reasons["unfinished"] += 1
    problems = discovery.unusable + [f"{s.session_id!r}: {s.problem}" for s in discovery.sessions.values() if s.problem]
    return SyncPlan(options, watermark_before, discovery, list(queued), refetch, reasons, rows, problems[:5])


def _reason(
    listed: ListedSession, stored_row: Mapping[str, object] | None, stored_run: sync_reads.StoredRun | None
) -> str | None:
    """Why a listed session with a run is queued, or None when what is stored is current."""
    if stored_run is not None and not stored_run.final:
        return "unfinished"
    if stored_row is None and stored_run is None:
        return "new"
    if listed.row is None:
        return "updated"  # the list item is unreadable: nothing proves the stored run current
    if stored_row is not None:
        return "updated" if listed.updated_at != stored_row.get("updated_at") else None
    assert stored_run is not None  # stored by `load`, never listed: did the session change after its run did?
    changed = stored_run.changed_at
    if listed.updated_at is None or changed is None or listed.updated_at > changed + SYNC_OVERLAP:
        return "updated"
    return None


def plan_from_state(
    state: sync_reads.StateView | None, discovery: Discovery, options: SyncOptions, watermark: datetime | None,
    *, with_agent_usage: bool = False,
) -> SyncPlan:
    """`plan_sync` over what the store holds for the listed sessions."""
    with_run = [session_id for session_id, s in discovery.sessions.items() if s.has_run]
    return plan_sync(
        discovery, options, watermark, stored_rows=sync_reads.stored_sessions(state, with_run),
        stored_runs=sync_reads.stored_runs(state, with_run), unfinished=sync_reads.unfinished_sessions(state),
        without_agent_usage=without_agent_usage(state, with_run) if with_agent_usage else (),
    )


def without_agent_usage(state: sync_reads.StateView | None, session_ids: Sequence[str]) -> set[str]:
    """The sessions among these whose agent usage is not stored (counting only rows of loads that count)."""
    if state is None or not session_ids or not state.has("agent_usage"):
        return set(session_ids)
    found = store.dimension_rows(state.con, "agent_usage", session_ids, ("session_id",))
    stored = {s for s, (_, load_id) in found.items() if state.committed is None or load_id in state.committed}
    return set(session_ids) - stored


async def begin_sync(
    load: LoadTransaction, client: PiperClient, options: SyncOptions, *, page_size: int = PAGE_SIZE,
    overlap: int = OVERLAP, with_agent_usage: bool = False,
) -> SyncPlan:
    """Read the watermark, list the sessions and plan the sync, inside the load it will land in."""
    with load.reading_state() as state:
        watermark = sync_reads.last_watermark(state)
    discovery = await list_sessions(client, stop_before=stop_before(options, watermark), page_size=page_size,
                                    overlap=overlap)
    crash_point("listed")
    with load.reading_state() as state:
        sync_plan = plan_from_state(state, discovery, options, watermark, with_agent_usage=with_agent_usage)
    load.expect_sessions(len(sync_plan.queued))
    return sync_plan


def watermark_after(sync_plan: SyncPlan, outcomes: Mapping[str, str]) -> datetime | None:
    """The watermark this sync commits (module docstring)."""
    before, found = sync_plan.watermark_before, sync_plan.discovery
    watermark = before
    if found.complete and not sync_plan.options.bounded:
        created = [s.created_at for s in found.sessions.values() if s.created_at is not None]
        watermark = max([*created, *([before] if before else [])], default=None)
    failed = [found.sessions[s] for s in sync_plan.queued
              if s in found.sessions and outcomes.get(s, "failed") == "failed"]
    if failed and watermark is not None:
        if any(s.created_at is None for s in failed):
            return None
        watermark = min(watermark, *(s.created_at for s in failed if s.created_at is not None))
    return watermark


def sync_tables(
    sync_plan: SyncPlan, outcomes: Mapping[str, str], *, load_id: str, started_at: datetime, status: str,
) -> dict[str, pa.Table]:
    """The `sessions` rows and the `sync_state` row a sync lands, given how its fetches ended."""
    queued = set(sync_plan.queued)
    landing = [s for session_id, s in sync_plan.rows.items()
               if session_id not in queued or outcomes.get(session_id) in STORED_OUTCOMES]
    if not sync_plan.discovery.complete and status == "succeeded":
        status = "incomplete"  # the load is fine, the listing is not proven: the watermark stays
    row = {
        "load_id": load_id,
        "started_at": started_at,
        "finished_at": datetime.now(UTC),
        "status": status,
        "watermark_before": sync_plan.watermark_before,
        "watermark_after": watermark_after(sync_plan, outcomes),
        "pages_read": sync_plan.discovery.pages_read,
        "sessions_listed": sync_plan.listed,
        "sessions_queued": len(sync_plan.queued),
        "full_scan": sync_plan.discovery.read_to_end,
    }
    return {
        "sessions": sessions_table(landing, load_id=load_id, loaded_at=started_at),
        "sync_state": pa.Table.from_pylist([row], schema=SYNC_STATE),
    }


def finish_sync(
    load: LoadTransaction, sync_plan: SyncPlan, plan: LoadPlan, settings: LoadSettings,
    reports: Sequence[ChunkReport], *, summarize: bool = False, scenarios: ScenarioReport | None = None,
) -> SyncSummary:
    """Land the sync's `sessions` and `sync_state` rows, then commit the load (which commits them)."""
    outcomes = sync_reads.landed_outcomes(load.target.landing_root, load.load_id)
    tables = sync_tables(sync_plan, outcomes, load_id=load.load_id, started_at=load.started_at,
                         status=load_status(reports))
    load.land(SYNC_PART, tables)
    summary = commit_load(load, plan, settings, reports, summarize=summarize, scenarios=scenarios)
    state = tables["sync_state"].to_pylist()[0]
    return SyncSummary(summary, sync_plan, state)


async def run_sync_async(
    settings: LoadSettings,
    options: SyncOptions,
    token: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_session: OnSession | None = None,
    on_plan: Callable[[LoadPlan], None] | None = None,
    page_size: int = PAGE_SIZE,
    overlap: int = OVERLAP,
) -> SyncSummary:
    """A whole sync without Prefect: list, plan, one stream of requests, land the sync's rows, commit."""
    client = make_client(settings, token, transport)  # validates the settings before any work
    with open_load(settings.state_dir, format=settings.output, lock_timeout=settings.lock_timeout,
                   landing_url=settings.out_url, database=settings.database,
                   storage_version=settings.duckdb_storage_version) as load:
        async with client:
            sync_plan = await begin_sync(load, client, options, page_size=page_size, overlap=overlap,
                                         with_agent_usage=settings.with_agent_usage)
            plan = plan_load(load, sync_plan.queued, settings, refetch_ids=sync_plan.refetch)
            if on_plan is not None:
                on_plan(plan)
            reports, scenarios = await land_planned(load, client, plan, settings, on_session=on_session,
                                                    session_info=sync_plan.session_info())
        return finish_sync(load, sync_plan, plan, settings, reports, scenarios=scenarios)


def run_sync(
    settings: LoadSettings, options: SyncOptions, token: str, *, transport: httpx.AsyncBaseTransport | None = None,
    on_session: OnSession | None = None, on_plan: Callable[[LoadPlan], None] | None = None,
    page_size: int = PAGE_SIZE, overlap: int = OVERLAP,
) -> SyncSummary:
    """Run a whole sync in this process (the CLI's default path)."""
    with fewer_gc_passes():
        return asyncio.run(run_sync_async(settings, options, token, transport=transport, on_session=on_session,
                                          on_plan=on_plan, page_size=page_size, overlap=overlap))


async def dry_run_async(
    settings: LoadSettings, options: SyncOptions, token: str, *, transport: httpx.AsyncBaseTransport | None = None,
    page_size: int = PAGE_SIZE, overlap: int = OVERLAP,
) -> SyncPlan:
    """List and plan as a sync would, reading the output folder without writing anything (not even creating it)."""
    client = make_client(settings, token, transport)
    with sync_reads.open_state_readonly(settings.state_dir, lock_timeout=settings.lock_timeout,
                                        landing_url=settings.out_url) as state:
        watermark = sync_reads.last_watermark(state)
        async with client:
            discovery = await list_sessions(client, stop_before=stop_before(options, watermark),
                                            page_size=page_size, overlap=overlap)
        return plan_from_state(state, discovery, options, watermark, with_agent_usage=settings.with_agent_usage)


def dry_run_lines(sync_plan: SyncPlan) -> list[str]:
    """What `sync --dry-run` prints: the counts, then the first queued ids and the first problems."""
    lines = [f"dry run: {sync_plan.describe()}; nothing was written"]
    if sync_plan.queued:
        first = ", ".join(repr(s) for s in sync_plan.queued[:SHOWN_IDS])
        more = f" and {len(sync_plan.queued) - SHOWN_IDS} more" if len(sync_plan.queued) > SHOWN_IDS else ""
        lines.append(f"  would fetch: {first}{more}")
    if not sync_plan.discovery.complete:
        lines.append("  the list kept changing while it was read: it is not proven complete")
    lines += [f"  {problem}" for problem in sync_plan.problems]
    return lines
