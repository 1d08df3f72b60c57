"""The `loads` row, built in this one place for finished, recovered and caught-up loads alike."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

LOAD_STATUSES = ("succeeded", "partial", "aborted", "recovered")


@dataclass
class LoadCounts:
    """What a load did to its sessions (`fetch_log` outcomes) and how many rows it landed per data table."""

    outcomes: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)

    def add(self, other: LoadCounts) -> None:
        self.outcomes.update(other.outcomes)
        self.rows.update(other.rows)


def load_row(
    *,
    load_id: str,
    load_seq: int | None,
    started_at: datetime,
    finished_at: datetime,
    status: str,
    counts: LoadCounts,
    parameters: Mapping[str, object],
) -> dict[str, object]:
    """The row of `loads` (schemas.tables.LOADS) for one load."""
    if status not in LOAD_STATUSES:
        raise ValueError(f"unknown load status {status!r}")
    outcomes, rows = counts.outcomes, counts.rows
    return {
        "load_id": load_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "status": status,
        "sessions_requested": sum(outcomes.values()),
        "sessions_loaded": outcomes["loaded"],
        "sessions_not_found": outcomes["not_found"],
        "sessions_failed": outcomes["failed"],
        "sessions_rejected": outcomes["rejected"],
        "sessions_skipped": outcomes["skipped"],
        "runs_written": rows["runs"],
        "turns_written": rows["turns"],
        "criteria_results_written": rows["criteria_results"],
        "parameters": json.dumps(dict(parameters), sort_keys=True, default=str),
        "load_seq": load_seq,
    }
