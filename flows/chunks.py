"""A chunk of a load: fetched results flattened as they arrive, then landed as Parquet parts at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from connector.client import FetchResult
from connector.errors import PiperAuthError, PiperStopLoad
from connector.urls import printable_session_id
from schemas.flatten import FlatRun, PayloadRejected, build_tables, flatten_run
from schemas.tables import FETCH_LOG, REJECTED_PAYLOADS
from warehouse import landing
from warehouse.crash import crash_point

OnSession = Callable[[str], None]
"""Called with each session's outcome as soon as it is known (drives the progress bar)."""


@dataclass
class ChunkReport:
    """What one chunk did; small enough to pass between Prefect tasks."""

    chunk_index: int
    outcomes: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)
    stop_message: str | None = None  # set when the load must stop: no further request can succeed
    stop_reason: str | None = None  # what the sessions never sent are recorded with
    token_refused: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)  # (session_id, reason), first few


def log_row(
    load_id: str, result: FetchResult, outcome: str, run_id: str | None, error: str | None
) -> dict[str, object]:
    """The `fetch_log` row of one session."""
    return {
        "load_id": load_id,
        "session_id": printable_session_id(result.session_id),  # argv bytes that are not UTF-8 stay visible
        "outcome": outcome,
        "http_status": result.http_status,
        "attempts": result.attempts,
        "error": error,
        "run_id": run_id,
        "fetched_at": result.fetched_at,
        "elapsed_ms": result.elapsed_ms,
    }


class ChunkBuilder:
    """Collects one chunk: each result is flattened on arrival and its payload dropped; `land` writes it."""

    def __init__(
        self, *, load_id: str, loaded_at: datetime, chunk_index: int, org_id: str, on_session: OnSession | None = None
    ) -> None:
        self.load_id, self.loaded_at, self.org_id = load_id, loaded_at, org_id
        self.report = ChunkReport(chunk_index)
        self.on_session = on_session
        self.flat_runs: dict[str, FlatRun] = {}
        self.log_rows: list[dict[str, object]] = []
        self.rejected_rows: list[dict[str, object]] = []

    @property
    def size(self) -> int:
        return len(self.log_rows)

    def record(self, result: FetchResult) -> None:
        crash_point("fetching")
        outcome: str = result.outcome
        run_id, error = None, result.error
        if outcome == "ok":
            try:
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
                self.flat_runs[run_id] = flat
        self.log_rows.append(log_row(self.load_id, result, outcome, run_id, error))
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

    def land(self, root: Path) -> ChunkReport:
        """Build the chunk's tables and write them as Parquet parts (whole or not at all)."""
        tables: dict[str, pa.Table] = dict(
            build_tables(list(self.flat_runs.values()), load_id=self.load_id, loaded_at=self.loaded_at)
        )
        tables["fetch_log"] = pa.Table.from_pylist(self.log_rows, schema=FETCH_LOG)
        tables["rejected_payloads"] = pa.Table.from_pylist(self.rejected_rows, schema=REJECTED_PAYLOADS)
        for name in ("runs", "turns", "criteria_results"):
            self.report.rows[name] = tables[name].num_rows
        landing.write_chunk(root, self.load_id, self.report.chunk_index, tables)
        return self.report
