"""Parquet landing files: one set of parts per load, each written atomically.

Layout under a landing root (`OUT/parquet` for `--format parquet|both`, `OUT/_staging` for `duckdb`):

    <root>/<table>/<load_id>-<chunk:05d>.parquet

A part is written to a hidden temporary name in the same folder, flushed to disk, then renamed, so a
reader never sees a partial file under a `.parquet` name. Load ids start with their UTC start time, so
sorting them sorts loads in time.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.tables import LANDED_TABLES, LOADS
from warehouse.crash import crash_point

PARQUET_DIR = "parquet"
STAGING_DIR = "_staging"
ALL_LANDED = (*LANDED_TABLES, "loads")


# Long free text and per-row ids: a dictionary would hold nearly every value, so building one (and then
# falling back to plain encoding) only costs CPU. Every other column repeats values and gets one.
_NO_DICTIONARY = frozenset({"criteria_result_id", "critique", "evidence", "response_content", "body", "error"})


def _dictionary_columns(table: pa.Table) -> list[str]:
    return [name for name in table.column_names if name not in _NO_DICTIONARY]


def new_load_id(started_at: datetime) -> str:
    """A load id that sorts by start time: `20261128T125227123456Z-1a2b3c`."""
    return f"{started_at.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(3)}"


def part_path(root: Path, table: str, load_id: str, chunk_index: int) -> Path:
    return root / table / f"{load_id}-{chunk_index:05d}.parquet"


def write_part(table: pa.Table, path: Path) -> Path:
    """Write `table` to `path` atomically (temporary file, fsync, rename); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as sink:
            pq.write_table(table, sink, compression="zstd", use_dictionary=_dictionary_columns(table))
            sink.flush()
            os.fsync(sink.fileno())
        crash_point("parquet-written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_chunk(root: Path, load_id: str, chunk_index: int, tables: dict[str, pa.Table]) -> list[Path]:
    """Land one chunk's tables; empty tables write no file. The fetch log is written last.

    Writing `fetch_log` last makes its part the marker of a complete chunk: recovery trusts a chunk's
    data parts only through the fetch-log part that follows them.
    """
    written: list[Path] = []
    try:
        for name in sorted(tables, key=lambda n: n == "fetch_log"):
            if name not in LANDED_TABLES:
                raise ValueError(f"unknown landed table {name!r}")
            table = tables[name]
            if table.num_rows == 0:
                continue
            written.append(write_part(table.cast(LANDED_TABLES[name]), part_path(root, name, load_id, chunk_index)))
    except BaseException:
        for part in written:  # a chunk lands whole or not at all
            part.unlink(missing_ok=True)
        raise
    return written


def write_load_row(root: Path, load_row: dict[str, object]) -> Path:
    """Land the `loads` row of a finished load as its own part."""
    table = pa.Table.from_pylist([load_row], schema=LOADS)
    return write_part(table, root / "loads" / f"{load_row['load_id']}.parquet")


def load_parts(root: Path, load_id: str, table: str) -> list[Path]:
    """The landed parts of one table for one load, in chunk order."""
    folder = root / table
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{load_id}-*.parquet"))


def landed_load_ids(root: Path) -> list[str]:
    """Every load id with at least one complete chunk under `root`, oldest first."""
    folder = root / "fetch_log"
    if not folder.is_dir():
        return []
    return sorted({p.name.rsplit("-", 1)[0] for p in folder.glob("*.parquet")})


def remove_load(root: Path, load_id: str) -> None:
    """Delete every part of one load under `root` (used for the staging area once merged)."""
    for table in ALL_LANDED:
        for part in load_parts(root, load_id, table):
            part.unlink(missing_ok=True)
        (root / table / f"{load_id}.parquet").unlink(missing_ok=True)


def remove_incomplete_chunks(root: Path) -> int:
    """Delete data parts whose chunk never got its fetch-log part (the writer was killed in between)."""
    complete = {part.stem for part in (root / "fetch_log").glob("*.parquet")}
    removed = 0
    for name in LANDED_TABLES:
        if name == "fetch_log":
            continue
        for part in (root / name).glob("*.parquet"):
            if part.stem not in complete:
                part.unlink(missing_ok=True)
                removed += 1
    return removed


def remove_stale_temp_files(root: Path) -> int:
    """Delete temporary files that a killed writer left behind; returns how many. One writer at a time."""
    removed = 0
    for tmp in root.glob("*/.*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
