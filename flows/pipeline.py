"""The load, as plain functions: plan, fetch and land chunks, then merge. Prefect-free.

`run_load` chains them for the command line; `flows.prefect_flow` wraps the same steps as a flow
and tasks. Each chunk lands its Parquet parts on its own. The DuckDB file has one writer connection
per load: `run_load` opens it before fetching and inserts each landed chunk into the load's open
transaction (the flow does the same across its tasks); `finish_load` commits it, or, without one,
merges the whole load.
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa

from connector.client import FetchResult, PiperClient
from connector.errors import PiperStopLoad
from connector.retry import RetryPolicy
from flows.chunks import ChunkBuilder, ChunkReport, OnSession, log_row
from flows.publish import publish_after_merge
from flows.settings import LoadSettings
from schemas.tables import FETCH_LOG
from warehouse import landing, store, views
from warehouse.crash import crash_point
from warehouse.merge import MERGE_WHILE_FETCHING_UP_TO, LoadMerge, merge_load


@dataclass
class LoadPlan:
    """What a load will do: which sessions to fetch, which to skip, under which load id."""

    load_id: str
    started_at: datetime
    requested: list[str]
    to_fetch: list[str]
    skipped: dict[str, str]  # session_id -> run_id already stored with a final status

    def chunks(self, size: int) -> list[list[str]]:
        return [self.to_fetch[i : i + size] for i in range(0, len(self.to_fetch), size)]


@dataclass
class LoadSummary:
    """The outcome of a whole load, as recorded in the `loads` table."""

    load_id: str
    status: str
    out_dir: Path
    outcomes: Counter[str]
    rows: Counter[str]
    started_at: datetime
    finished_at: datetime
    stop_message: str | None = None
    token_refused: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verdicts_markdown: str | None = None  # the warehouse's verdict summary, when `finish_load` was asked for it

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
            f"{self.rows['runs']} runs, {self.rows['turns']} turns, {self.rows['criteria_results']} criteria results "
            f"written to {self.out_dir} in {seconds:.1f} s"
        )


def unique_session_ids(session_ids: Iterable[str]) -> list[str]:
    """Session ids in first-seen order, each once."""
    return list(dict.fromkeys(session_ids))


def landing_root(settings: LoadSettings) -> Path:
    folder = landing.PARQUET_DIR if settings.writes_parquet else landing.STAGING_DIR
    return settings.out_dir / folder


def plan_load(session_ids: Iterable[str], settings: LoadSettings, *, now: datetime | None = None) -> LoadPlan:
    """Deduplicate the ids and, unless `refetch`, set aside sessions already stored with a final run."""
    started_at = now or datetime.now(UTC)
    requested = unique_session_ids(session_ids)
    landing.remove_stale_temp_files(landing_root(settings))  # left by a killed writer; one writer at a time
    landing.remove_incomplete_chunks(landing_root(settings))
    skipped = {} if settings.refetch else stored_final_runs(settings, requested)
    return LoadPlan(
        load_id=landing.new_load_id(started_at),
        started_at=started_at,
        requested=requested,
        to_fetch=[s for s in requested if s not in skipped],
        skipped=skipped,
    )


def stored_final_runs(settings: LoadSettings, session_ids: list[str]) -> dict[str, str]:
    """session_id -> run_id for the requested sessions whose stored run is final.

    Reads DuckDB when the load writes it, else the Parquet current state. A DuckDB file locked by
    another writer does not stop the load here: the Parquet state answers instead (or nothing is
    skipped), so the sessions are fetched and landed, and only the merge waits for the lock.
    """
    if not session_ids:
        return {}
    database = settings.out_dir / store.DATABASE_FILE
    parquet_root = settings.out_dir / landing.PARQUET_DIR
    con = None
    if settings.writes_duckdb:
        if not database.exists():
            return {}
        try:
            con = store.connect(database, read_only=True, lock_timeout=0)
        except store.WarehouseLocked:
            if not settings.writes_parquet:
                return {}
    if con is None:
        con = views.open_current_state(parquet_root)
    try:
        return store.final_session_runs(con, session_ids)
    finally:
        con.close()


async def fetch_and_land(
    client: PiperClient,
    session_ids: Sequence[str],
    settings: LoadSettings,
    *,
    load_id: str,
    loaded_at: datetime,
    first_chunk: int = 1,
    on_session: OnSession | None = None,
    merge: LoadMerge | None = None,
) -> list[ChunkReport]:
    """Fetch sessions in one stream of requests and land them as Parquet parts, chunk by chunk.

    Requests never wait for a chunk boundary: a full chunk is landed in a worker thread while fetching
    goes on into the next one, and at most one chunk lands at a time, so at most two are in memory
    whatever the number of sessions. Chunks are numbered from `first_chunk`. Every session ends in a
    report, including those never sent after the load stopped. With `merge`, each landed chunk's rows
    are also inserted into the load's open DuckDB transaction, in the same worker thread.
    """
    lander = _StreamLander(settings, load_id=load_id, loaded_at=loaded_at, first_chunk=first_chunk,
                           org_id=client.org_id, on_session=on_session, merge=merge, expected=len(session_ids))
    batch = await client.fetch_many(session_ids, on_result=lander.record)
    crash_point("fetched")
    return await lander.finish(batch.stopped)


def land_unfetched(plan: LoadPlan, settings: LoadSettings, later_chunks: list[list[str]], reason: str) -> ChunkReport:
    """Record the sessions never sent because the load stopped as `failed`, so none goes missing."""
    now = datetime.now(UTC)
    rows = [
        log_row(plan.load_id, FetchResult(session_id=s, outcome="failed", error=reason, fetched_at=now), "failed",
                 None, reason)
        for chunk in later_chunks
        for s in chunk
    ]
    report = ChunkReport(chunk_index=99_998, outcomes=Counter({"failed": len(rows)}))
    if rows:
        table = pa.Table.from_pylist(rows, schema=FETCH_LOG)
        landing.write_chunk(landing_root(settings), plan.load_id, report.chunk_index, {"fetch_log": table})
    return report


def land_skipped(plan: LoadPlan, settings: LoadSettings) -> ChunkReport:
    """Record the sessions skipped because their stored run is final."""
    report = ChunkReport(chunk_index=0, outcomes=Counter({"skipped": len(plan.skipped)}))
    if plan.skipped:
        rows = [
            {
                "load_id": plan.load_id,
                "session_id": session_id,
                "outcome": "skipped",
                "http_status": None,
                "attempts": 0,
                "error": None,
                "run_id": run_id,
                "fetched_at": plan.started_at,
                "elapsed_ms": 0.0,
            }
            for session_id, run_id in plan.skipped.items()
        ]
        landing.write_chunk(
            landing_root(settings), plan.load_id, 0, {"fetch_log": pa.Table.from_pylist(rows, schema=FETCH_LOG)}
        )
    return report


def finish_load(
    plan: LoadPlan,
    settings: LoadSettings,
    reports: Sequence[ChunkReport],
    merge: LoadMerge | None = None,
    *,
    summarize: bool = False,
) -> LoadSummary:
    """Write the `loads` row and commit the load's merge into DuckDB, then publish.

    `merge`: the load's open merge (from `open_merge`), holding the chunks inserted while fetching;
    without one, the database is opened here (waiting up to `lock_timeout` for another writer) and the
    whole load merged from its landed parts. Either way the load becomes visible in one COMMIT, and
    `merge` is closed. `summarize`: fill `LoadSummary.verdicts_markdown` when the load writes DuckDB
    (read while the snapshot is copied, see `publish_after_merge`).
    """
    outcomes: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    failures: list[tuple[str, str]] = []
    stop_message, token_refused = None, False
    for report in reports:
        outcomes.update(report.outcomes)
        rows.update(report.rows)
        failures.extend(report.failures)
        stop_message = stop_message or report.stop_message
        token_refused = token_refused or report.token_refused
    status = "aborted" if stop_message else "partial" if outcomes["failed"] or outcomes["rejected"] else "succeeded"
    finished_at = datetime.now(UTC)
    load_row: dict[str, object] = {
        "load_id": plan.load_id,
        "started_at": plan.started_at,
        "finished_at": finished_at,
        "status": status,
        "sessions_requested": len(plan.requested),
        "sessions_loaded": outcomes["loaded"],
        "sessions_not_found": outcomes["not_found"],
        "sessions_failed": outcomes["failed"],
        "sessions_rejected": outcomes["rejected"],
        "sessions_skipped": outcomes["skipped"],
        "runs_written": rows["runs"],
        "turns_written": rows["turns"],
        "criteria_results_written": rows["criteria_results"],
        "parameters": json.dumps(settings.as_parameters(), sort_keys=True),
    }
    root = landing_root(settings)
    try:
        if settings.writes_parquet:
            landing.write_load_row(root, load_row)
            views.write_current_state_sql(settings.out_dir, root)
        if settings.writes_duckdb and merge is None:
            release_unused_memory()
            merge = open_merge(plan, settings, lock_timeout=settings.lock_timeout)
        if merge is not None:
            merge.commit(load_row)
            crash_point("merged")
        # on the same connection: no second open, and the lock is kept
        verdicts = publish_after_merge(settings, merge.con if merge is not None else None, summarize=summarize)
    finally:
        if merge is not None:
            close_merge(merge)
    if settings.writes_duckdb and not settings.writes_parquet:
        for merged in landing.landed_load_ids(root):
            landing.remove_load(root, merged)
        shutil.rmtree(root, ignore_errors=True)
    return LoadSummary(
        load_id=plan.load_id,
        status=status,
        out_dir=settings.out_dir,
        outcomes=outcomes,
        rows=rows,
        started_at=plan.started_at,
        finished_at=finished_at,
        stop_message=stop_message,
        token_refused=token_refused,
        failures=failures[:5],
        warnings=load_warnings(outcomes, settings),
        verdicts_markdown=verdicts,
    )


def release_unused_memory() -> None:
    """Hand back what the fetch freed but kept, before a merge after the fetch takes DuckDB's share.

    pyarrow's allocator (mimalloc) keeps freed buffers for reuse, and reference cycles wait for the
    cycle collector (`fewer_gc_passes`). On the bench's 200,000-session load, the merge's peak RSS fell
    from 481 to 433 MB with merge time unchanged (36 s). Loads merged while fetching skip this: their
    DuckDB memory is already held, and the collection would add to the time after the last response.
    """
    gc.collect()
    pa.default_memory_pool().release_unused()


def open_merge(plan: LoadPlan, settings: LoadSettings, *, lock_timeout: float) -> LoadMerge:
    """Open the database as its writer and begin this load's merge.

    Loads that landed Parquet parts but never reached the database (an interrupted run) are merged
    first, oldest first, each in its own transaction, so the database converges to the Parquet state.
    """
    con = store.connect(settings.out_dir / store.DATABASE_FILE, lock_timeout=lock_timeout)
    try:
        root = landing_root(settings)
        for earlier in sorted(set(landing.landed_load_ids(root)) - store.merged_load_ids(con) - {plan.load_id}):
            recovered = merge_load(con, root, earlier, None)
            if settings.writes_parquet and not (root / "loads" / f"{earlier}.parquet").exists():
                landing.write_load_row(root, recovered)
        return LoadMerge(con, root, plan.load_id)
    except BaseException:
        con.close()
        raise


def open_merge_before_fetching(plan: LoadPlan, settings: LoadSettings) -> LoadMerge | None:
    """The load's merge opened before its first request, so that each chunk is inserted as it lands.

    None when the load does not write DuckDB, fetches more than `MERGE_WHILE_FETCHING_UP_TO` sessions,
    or another process holds the file: then the fetch goes on and `finish_load` merges after it (waiting
    for the lock if need be).
    """
    if not settings.writes_duckdb or len(plan.to_fetch) > MERGE_WHILE_FETCHING_UP_TO:
        return None
    try:
        return open_merge(plan, settings, lock_timeout=0)
    except store.WarehouseLocked:
        return None


def close_merge(merge: LoadMerge) -> None:
    """Roll back what was not committed (a failed load: its landed parts are merged by the next) and close."""
    try:
        merge.rollback()
    finally:
        merge.con.close()


def load_warnings(outcomes: Counter[str], settings: LoadSettings) -> list[str]:
    """Hints for outcomes that point at a setting rather than at the sessions."""
    fetched = outcomes["loaded"] + outcomes["not_found"] + outcomes["rejected"]
    if fetched and outcomes["not_found"] == fetched:
        return [
            f"every one of the {fetched} sessions fetched was not found (404): the org id {settings.org_id!r} "
            f"or the base URL {settings.base_url!r} is probably wrong"
        ]
    return []


def chunks_for(sessions: int, chunk_size: int) -> int:
    """The most chunks a stream of `sessions` lands: one per `chunk_size`, plus its split last chunk."""
    return -(-sessions // chunk_size) + 1


def make_client(settings: LoadSettings, token: str, transport: httpx.AsyncBaseTransport | None = None) -> PiperClient:
    return PiperClient(
        base_url=settings.base_url,
        org_id=settings.org_id,
        token=token,
        concurrency=settings.concurrency,
        retry=RetryPolicy(max_retries=settings.max_retries),
        transport=transport,
        http_client=settings.http_client,
    )


async def run_load_async(
    session_ids: Iterable[str],
    settings: LoadSettings,
    token: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_session: OnSession | None = None,
    on_plan: Callable[[LoadPlan], None] | None = None,
) -> LoadSummary:
    """The whole load without Prefect: plan, one stream of requests over all sessions, merge."""
    client = make_client(settings, token, transport)  # validates the settings before any work
    plan = plan_load(session_ids, settings)
    if on_plan is not None:
        on_plan(plan)
    merge = open_merge_before_fetching(plan, settings)
    try:
        async with client:
            reports = await fetch_and_land(client, plan.to_fetch, settings, load_id=plan.load_id,
                                           loaded_at=plan.started_at, on_session=on_session, merge=merge)
        skipped = land_skipped(plan, settings)
    except BaseException:
        if merge is not None:
            close_merge(merge)
        raise
    return finish_load(plan, settings, [skipped, *reports], merge)


class _StreamLander:
    """Receives results one by one and lands a chunk whenever `chunk_size` results have arrived.

    The stream's last chunk is split once, so that less of it is left to land after the last response:
    it is handed over as soon as what is still to come is at most half of what it holds, and lands
    while the last responses arrive; only the rest (a third of the whole) lands after them. On the
    bench (2,000 sessions, format duckdb) the time after the last response fell from 0.24 to 0.16 s;
    splitting further (every piece in two) cost more in per-chunk work than it saved. So a stream of
    n sessions lands at most `chunks_for(n, chunk_size)` chunks.
    """

    def __init__(
        self,
        settings: LoadSettings,
        *,
        load_id: str,
        loaded_at: datetime,
        first_chunk: int,
        org_id: str,
        on_session: OnSession | None,
        merge: LoadMerge | None = None,
        expected: int = 0,
    ) -> None:
        self.settings, self.load_id, self.loaded_at = settings, load_id, loaded_at
        self.still_to_come = expected  # results not recorded yet (0: unknown, never split)
        self.split = False
        self.org_id, self.on_session, self.merge = org_id, on_session, merge
        self.root = landing_root(settings)
        self.reports: list[ChunkReport] = []
        self.landing: asyncio.Future[ChunkReport] | None = None
        self.hand_over_lock = asyncio.Lock()
        self.chunk_index = first_chunk - 1
        self.builder = self._new_builder()

    def _new_builder(self) -> ChunkBuilder:
        self.chunk_index += 1
        return ChunkBuilder(load_id=self.load_id, loaded_at=self.loaded_at, chunk_index=self.chunk_index,
                            org_id=self.org_id, on_session=self.on_session)

    def record(self, result: FetchResult) -> Awaitable[None] | None:
        self.builder.record(result)
        self.still_to_come -= 1
        if self.builder.size < self.settings.chunk_size and not self._split_now():
            return None
        full, self.builder = self.builder, self._new_builder()
        return self._hand_over(full)

    def _split_now(self) -> bool:
        if self.split or not 0 < self.still_to_come * 2 <= self.builder.size:
            return False
        self.split = True
        return True

    async def _hand_over(self, full: ChunkBuilder) -> None:
        # Back-pressure: one chunk lands at a time, and hand-overs queue up behind the lock, so a
        # landing's report is collected exactly once.
        async with self.hand_over_lock:
            if self.landing is not None:
                self.reports.append(await self.landing)
            self.landing = asyncio.ensure_future(asyncio.to_thread(self._land, full))

    def _land(self, full: ChunkBuilder) -> ChunkReport:
        report = full.land(self.root)
        if self.merge is not None:
            # Read back from the parts just written (in the page cache): inserting the Arrow tables
            # themselves made DuckDB hold on to their memory until the COMMIT (+ 430 MB at 15 k sessions).
            self.merge.add_chunk(report.chunk_index)
        return report

    async def finish(self, stopped: PiperStopLoad | None) -> list[ChunkReport]:
        if stopped is not None:
            self.builder.stopped(stopped)
        if self.builder.size or stopped is not None:
            await self._hand_over(self.builder)
        async with self.hand_over_lock:
            if self.landing is not None:
                self.reports.append(await self.landing)
                self.landing = None
        return sorted(self.reports, key=lambda report: report.chunk_index)


@contextmanager
def fewer_gc_passes(first_threshold: int = 100_000) -> Iterator[None]:
    """Wake Python's cycle collector less often while a load runs; restored afterwards.

    A load allocates millions of small dicts and lists (decoded payloads, column lists) that hold no
    reference cycles: reference counting frees them, yet every 700 allocations (the default) wake the
    cycle collector to walk the young ones. Measured on the bench payloads, that is about a fifth of the
    flatten's CPU (45 vs 36 us a session). Objects that exist before the load are frozen out of the
    walks. Cycles are still collected, only in larger batches.
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
) -> LoadSummary:
    """Run a whole load in this process with no orchestration (the CLI's default path)."""
    with fewer_gc_passes():
        return asyncio.run(
            run_load_async(session_ids, settings, token, transport=transport, on_session=on_session, on_plan=on_plan)
        )
