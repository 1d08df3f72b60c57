"""A chunk of a load: fetched results flattened as they arrive, then handed to the load's sink at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pyarrow as pa

from connector.client import FetchResult
from connector.errors import PiperAuthError, PiperStopLoad
from schemas.flatten import FlatRun, PayloadRejected, build_tables, flatten_run
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
        "session_id": session_id,
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
        self, *, load_id: str, loaded_at: datetime, part: str, org_id: str, on_session: OnSession | None = None
    ) -> None:
        self.load_id, self.loaded_at, self.org_id = load_id, loaded_at, org_id
        self.report = ChunkReport(part)
        self.on_session = on_session
        self.flat_runs: dict[str, FlatRun] = {}  # by session: two sessions may return one run id
        self.log_rows: list[dict[str, object]] = []
        self.rejected_rows: list[dict[str, object]] = []

    @property
    def size(self) -> int:
        return len(self.log_rows)

    def record(self, result: FetchResult) -> None:
        crash_point("fetching")
        outcome: str = result.outcome
        run_id, error = None, result.error
        unparsable = outcome == "rejected" and result.body is not None  # a 2xx body the client found never parses
        if outcome == "ok" or unparsable:
            try:
                if unparsable:
                    raise PayloadRejected(result.error or "the body does not parse")
                flat = flatten_run(result.payload, session_id=result.session_id, org_id=self.org_id,
                                   utf8_checked=True)  # decoded by the client's orjson
            except PayloadRejected as exc:
                outcome, error = "rejected", f"payload rejected: {exc.reason}"
                self.rejected_rows.append({
                    "session_id": result.session_id,
                    "load_id": self.load_id,
                    "reason": exc.reason,
                    "body": (result.body or b"").decode("utf-8", errors="replace"),
                    "rejected_at": result.fetched_at,
                })
            else:
                outcome, run_id = "loaded", str(flat.run["run_id"])
                self.flat_runs[result.session_id] = flat
        self.log_rows.append(log_row(
            self.load_id, result.session_id, outcome, fetched_at=result.fetched_at, http_status=result.http_status,
            attempts=result.attempts, error=error, run_id=run_id, elapsed_ms=result.elapsed_ms,
        ))
        report = self.report
        report.outcomes[outcome] += 1
        never_sent = outcome == "failed" and result.attempts == 0
        if outcome in ("failed", "rejected") and not never_sent and len(report.failures) < 5:
            report.failures.append((result.session_id, error or outcome))
        if self.on_session is not None:
            self.on_session(outcome)

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
        for name in ("runs", "turns", "criteria_results"):
            self.report.rows[name] = tables[name].num_rows
        sink(self.report.part, tables)
        return self.report
