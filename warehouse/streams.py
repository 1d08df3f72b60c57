"""One fetch task's landed chunks, for a task that starts again after its worker died (a Dask rerun).

A *stream* is the parts one fetch task lands: `<stream>-0001`, `<stream>-0002`, ..., and, when the task
runs again, `<stream>-r2-0001`, ... (so every part of the task begins with `<stream>-`). Only that task
writes them, so what an earlier attempt left is from a writer that is gone: its complete chunks stay
(their sessions are done and may already be in the load's DuckDB transaction), its incomplete chunks
and temporary files are removed, as recovery does for a dead load (`warehouse/recovery.py`), before
the commit could pick them up.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from schemas.tables import LANDED_TABLES
from warehouse import files, landing, objstore
from warehouse.objstore import Root

_ATTEMPT = re.compile(r"-r(\d+)-")
FAILURES_KEPT = 5  # as a chunk's report keeps them


@dataclass(frozen=True)
class LandedChunk:
    """What one complete chunk of a stream holds, read back from its files."""

    part: str
    outcomes: Counter[str]
    rows: Counter[str]
    failures: list[tuple[str, str]]  # (session_id, reason), the first few failed or rejected after a request
    scenario_ids: set[str]


@dataclass(frozen=True)
class LandedStream:
    """The complete chunks an earlier attempt of a task landed, and the stream name of its next attempt."""

    chunks: list[LandedChunk] = field(default_factory=list)
    session_ids: frozenset[str] = frozenset()
    next_stream: str = ""


def stream_of_attempt(stream: str, attempt: int) -> str:
    """The part prefix of a task's attempt: the stream itself first, `<stream>-r<attempt>` after."""
    return stream if attempt <= 1 else f"{stream}-r{attempt}"


def resume_stream(root: Root, load_id: str, stream: str) -> LandedStream:
    """Keep the complete chunks of `stream`, delete the rest it left, and name the next attempt's stream.

    Call it only where no other attempt of the same task can still be writing (the attempt that runs now,
    or the flow once the task has ended).
    """
    prefix = f"{stream}-"
    complete = {part for part in _parts(root, load_id, "fetch_log") if part.startswith(prefix)}
    attempts = 1 if complete else 0
    for table in LANDED_TABLES:
        for part in _parts(root, load_id, table):
            if not part.startswith(prefix):
                continue
            found = _ATTEMPT.match(part[len(stream):])
            attempts = max(attempts, int(found.group(1)) if found else 1)
            if part not in complete:
                landing.part_path(root, table, load_id, part).unlink(missing_ok=True)
    for tmp in root.glob(f"*/.{load_id}.{prefix}*{files.TMP_SUFFIX}") if isinstance(root, Path) else ():
        attempts = max(attempts, 1)  # (an object store has no temporary objects: a write is one PUT)
        tmp.unlink(missing_ok=True)
    chunks = [_read_chunk(root, load_id, part) for part in sorted(complete)]
    sessions = frozenset().union(*(_session_ids(root, load_id, part) for part in complete))
    return LandedStream(chunks, sessions, stream_of_attempt(stream, attempts + 1))


def _parts(root: Root, load_id: str, table: str) -> list[str]:
    return [landing.chunk_of(path).split(".", 1)[1] for path in landing.load_parts(root, load_id, table)
            if "." in landing.chunk_of(path)]


def _session_ids(root: Root, load_id: str, part: str) -> set[str]:
    log = objstore.read_table(landing.part_path(root, "fetch_log", load_id, part), columns=["session_id"])
    return {str(session_id) for session_id in log.column("session_id").to_pylist()}


def _read_chunk(root: Root, load_id: str, part: str) -> LandedChunk:
    log = objstore.read_table(landing.part_path(root, "fetch_log", load_id, part),
                              columns=["session_id", "outcome", "attempts", "error"]).to_pylist()
    outcomes = Counter(str(row["outcome"]) for row in log)
    failures = [(str(row["session_id"]), str(row["error"] or row["outcome"])) for row in log
                if row["outcome"] in ("failed", "rejected") and row["attempts"]][:FAILURES_KEPT]
    rows: Counter[str] = Counter()
    scenario_ids: set[str] = set()
    for table in landing.DATA_TABLES:
        path = landing.part_path(root, table, load_id, part)
        exists = path.exists()
        rows[table] = objstore.num_rows(path) if exists else 0
        if table == "runs" and exists:
            scenario_ids = {str(s) for s in objstore.read_table(path, columns=["scenario_id"]).column(0).to_pylist()
                            if s}
    return LandedChunk(part, outcomes, rows, failures, scenario_ids)
