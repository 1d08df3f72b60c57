"""A chunk of a load: fetched results flattened as they arrive, then handed to the load's sink at once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pyarrow as pa

from connector.client import FetchResult
from connector.errors import PiperAuthError, PiperStopLoad
from connector.urls import printable_session_id
from schemas.agent_usage import build_agent_usage_table, flatten_session_events
from schemas.flatten import NO_SESSION_INFO, FlatRun, PayloadRejected, SessionInfo, build_tables, flatten_run
from schemas.tables import FETCH_LOG, REJECTED_PAYLOADS
from warehouse.crash import crash_point

OnSession = Callable[[str], None]
"""Called with each session's outcome as soon as it is known (drives the progress bar)."""


class ChunkSink(Protocol):
    """Where a chunk's tables go: `LoadTransaction.land`, or `land_chunk` with a task's `LoadTarget`."""

    def __call__(self, part: str, tables: dict[str, pa.Table], /) -> None: ...


@dataclass
class ChunkReport:
    """What one chunk did; small enough to pass between Prefect tasks."""

    part: str  # the chunk's part name, unique within the load
    outcomes: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)
    stop_message: str | None = None  # set when the load must stop: no further request can succeed
    stop_reason: str | None = None  # what the sessions never sent are recorded with
    token_refused: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)  # (session_id, reason), first few
    scenario_ids: set[str] = field(default_factory=set)  # of the runs landed: their dimensions are refreshed


def log_row(
    load_id: str,
    session_id: str,
    outcome: str,
    *,
    fetched_at: datetime,
    http_status: int | None = None,
    attempts: int = 0,
    error: str | None = None,
    run_id: str | None = None,
    elapsed_ms: float = 0.0,
) -> dict[str, object]:
    """The `fetch_log` row of one session: the one place such a row is built."""
    return {
        "load_id": load_id,
        "session_id": printable_session_id(session_id),  # argv bytes that are not UTF-8 stay visible
        "outcome": outcome,
        "http_status": http_status,
        "attempts": attempts,
        "error": error,
        "run_id": run_id,
        "fetched_at": fetched_at,
        "elapsed_ms": elapsed_ms,
    }


def log_table(rows: list[dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=FETCH_LOG)


class ChunkBuilder:
    """Collects one chunk: each result is flattened on arrival and its payload dropped; `land` writes it."""

    def __init__(
        self, *, load_id: str, loaded_at: datetime, part: str, org_id: str, on_session: OnSession | None = None,
        session_info: Mapping[str, SessionInfo] | None = None,
    ) -> None:
        self.load_id, self.loaded_at, self.org_id = load_id, loaded_at, org_id
        self.session_info: Mapping[str, SessionInfo] = session_info or {}  # what the sessions list said
        self.report = ChunkReport(part)
        self.on_session = on_session
        self.flat_runs: dict[str, FlatRun] = {}  # by session: two sessions may return one run id
        self.log_rows: list[dict[str, object]] = []
        self.rejected_rows: list[dict[str, object]] = []
        self.agent_usage_rows: dict[str, list[dict[str, object]]] = {}  # by session, landed with its run

    @property
    def size(self) -> int:
        return len(self.log_rows)

    def record(self, result: FetchResult) -> None:
        crash_point("fetching")
        outcome: str = result.outcome
        run_id, error = None, result.error
        http_status, attempts = result.http_status, result.attempts
        unparsable = outcome == "rejected" and result.body is not None  # a 2xx body the client found never parses
        if outcome == "ok" or unparsable:
            try:
                if unparsable:
                    raise PayloadRejected(result.error or "the body does not parse")
                flat = flatten_run(result.payload, session_id=result.session_id, org_id=self.org_id,
                                   utf8_checked=True,  # decoded by the client's orjson
                                   session=self.session_info.get(result.session_id, NO_SESSION_INFO))
            except PayloadRejected as exc:
                outcome, error = "rejected", f"payload rejected: {exc.reason}"
                self._reject(result, exc.reason)
            else:
                outcome, run_id = "loaded", str(flat.run["run_id"])
                if result.events is not None:
                    attempts += result.events.attempts
                    outcome, error, events_status = self._agent_usage(result.session_id, result.events)
                    http_status = events_status or http_status
                if outcome == "loaded":
                    self.flat_runs[result.session_id] = flat
                else:
                    run_id = None
        self.log_rows.append(log_row(
            self.load_id, result.session_id, outcome, fetched_at=result.fetched_at, http_status=http_status,
            attempts=attempts, error=error, run_id=run_id, elapsed_ms=result.elapsed_ms,
        ))
        report = self.report
        report.outcomes[outcome] += 1
        never_sent = outcome == "failed" and result.attempts == 0
        if outcome in ("failed", "rejected") and not never_sent and len(report.failures) < 5:
            report.failures.append((result.session_id, error or outcome))
        if self.on_session is not None:
            self.on_session(outcome)

    def _reject(self, result: FetchResult, reason: str) -> None:
        self.rejected_rows.append({
            "session_id": result.session_id,
            "load_id": self.load_id,
            "reason": reason,
            "body": (result.body or b"").decode("utf-8", errors="replace"),
            "rejected_at": result.fetched_at,
        })

    def _agent_usage(self, session_id: str, events: FetchResult) -> tuple[str, str | None, int | None]:
        """(outcome, error, HTTP status) of a session whose run flattened, given how its events fetch ended.

        The events decide with the run, because their rows land with it or not at all: usable events land
        with the run (`loaded`); a 404 loads the run without agent usage, which stays unknown (NULL) and is
        fetched again by the next load with agent usage; events that failed make the session `failed` and
        events that are no usable payload make it `rejected` (body kept), so that nothing of the session
        lands and the next load fetches it again: a stored run never lacks agent usage it was asked to have.
        """
        if events.outcome == "not_found":
            return "loaded", "agent usage not stored: the events endpoint answered 404", None
        if events.outcome == "failed":
            return "failed", f"agent usage: {events.error or 'failed'}", events.http_status
        try:
            if events.outcome != "ok":
                raise PayloadRejected(events.error or "the body does not parse")
            rows = flatten_session_events(events.payload, session_id=session_id)
        except PayloadRejected as exc:
            reason = f"agent usage payload rejected: {exc.reason}"
            self._reject(events, reason)
            return "rejected", reason, events.http_status
        self.agent_usage_rows[session_id] = list(rows)
        return "loaded", None, None

    def stopped(self, stop: PiperStopLoad) -> None:
        """Note that the load stopped while this chunk was being fetched."""
        self.report.stop_message, self.report.stop_reason = str(stop), stop.unfetched_reason
        self.report.token_refused = isinstance(stop, PiperAuthError)

    def land(self, sink: ChunkSink) -> ChunkReport:
        """Build the chunk's tables and hand them to `sink`, which lands them whole or not at all."""
        tables: dict[str, pa.Table] = dict(
            build_tables(list(self.flat_runs.values()), load_id=self.load_id, loaded_at=self.loaded_at)
        )
        tables["fetch_log"] = log_table(self.log_rows)
        tables["rejected_payloads"] = pa.Table.from_pylist(self.rejected_rows, schema=REJECTED_PAYLOADS)
        usage = [row for rows in self.agent_usage_rows.values() for row in rows]
        tables["agent_usage"] = build_agent_usage_table(usage, load_id=self.load_id, loaded_at=self.loaded_at)
        for name in ("runs", "turns", "criteria_results"):
            self.report.rows[name] = tables[name].num_rows
        if usage:
            self.report.rows["agent_usage"] = sum(row["agent_run_id"] is not None for row in usage)
        sink(self.report.part, tables)
        self.report.scenario_ids.update(str(s) for flat in self.flat_runs.values() if (s := flat.run["scenario_id"]))
        return self.report


class StreamLander:
    """Receives results one by one and lands a chunk whenever `chunk_size` results have arrived.

    The stream's last chunk is split once, so that less of it is left to land after the last response
    (docs/performance.md, end to end): it is handed over as soon as what is still to come is at most half
    of what it holds, and lands while the last responses arrive.
    """

    def __init__(self, chunk_size: int, sink: ChunkSink, *, stream: str, load_id: str, loaded_at: datetime,
                 org_id: str, on_session: OnSession | None, expected: int = 0,
                 session_info: Mapping[str, SessionInfo] | None = None) -> None:
        self.chunk_size, self.sink, self.stream = chunk_size, sink, stream
        self.session_info = session_info
        self.load_id, self.loaded_at, self.org_id, self.on_session = load_id, loaded_at, org_id, on_session
        self.still_to_come = expected  # results not recorded yet (0: unknown, never split)
        self.split = False
        self.reports: list[ChunkReport] = []
        self.landing: asyncio.Future[ChunkReport] | None = None
        self.hand_over_lock = asyncio.Lock()
        self.chunks = 0
        self.builder = self._new_builder()

    def _new_builder(self) -> ChunkBuilder:
        self.chunks += 1
        return ChunkBuilder(load_id=self.load_id, loaded_at=self.loaded_at, part=f"{self.stream}-{self.chunks:04d}",
                            org_id=self.org_id, on_session=self.on_session, session_info=self.session_info)

    def record(self, result: FetchResult) -> Awaitable[None] | None:
        self.builder.record(result)
        self.still_to_come -= 1
        if self.builder.size < self.chunk_size and not self._split_now():
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
            self.landing = asyncio.ensure_future(asyncio.to_thread(full.land, self.sink))

    async def finish(self, stopped: PiperStopLoad | None) -> list[ChunkReport]:
        if stopped is not None:
            self.builder.stopped(stopped)
        if self.builder.size or stopped is not None:
            await self._hand_over(self.builder)
        async with self.hand_over_lock:
            if self.landing is not None:
                self.reports.append(await self.landing)
                self.landing = None
        return self.reports
