"""Parquet landing files: the parts a load writes, chunk by chunk, each written atomically.

Layout under a landing root (`OUT/parquet` for `--format parquet|both`, `OUT/_staging` for `duckdb`):

    <root>/<table>/<load_id>.<part>.parquet      a chunk's rows of one table
    <root>/loads/<load_id>.parquet               the load's `loads` row: written last, it commits the load

A part name is chosen by whoever lands the chunk (`main-0001`, `task-0003-0002`, `skipped`, `unsent`):
unique within the load, never computed from another part's number. Within a chunk the `fetch_log`
part is written last, so it marks the chunk complete. Parts written by piper-etl before 0.2 are named
`<load_id>-<chunk:05d>.parquet` and are still read.

A root is a local folder or an object-store folder (`warehouse/objstore.py`): the same layout, the same
rule; on the store each file is one PUT, so the `loads` row written last commits the load there too.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, overload

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.tables import LANDED_TABLES, LOADS
from warehouse import compacted, files, objstore
from warehouse.crash import crash_point
from warehouse.objstore import ObjectPath, Root

PARQUET_DIR = "parquet"
STAGING_DIR = "_staging"
LOADS_TABLE = "loads"
DATA_TABLES = ("runs", "turns", "criteria_results")

# Long free text and per-row ids: a dictionary would hold nearly every value, so building one (and then
# falling back to plain encoding) only costs CPU. Every other column repeats values and gets one.
_NO_DICTIONARY = frozenset({"criteria_result_id", "critique", "evidence", "response_content", "body", "error"})


def new_load_id(started_at: datetime) -> str:
    """A load id that tells people when it began: `20261128T125227123456Z-1a2b3c` (never used for ordering)."""
    return f"{started_at.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(3)}"


@overload
def part_path(root: Path, table: str, load_id: str, part: str) -> Path: ...
@overload
def part_path(root: ObjectPath, table: str, load_id: str, part: str) -> ObjectPath: ...
def part_path(root: Root, table: str, load_id: str, part: str) -> Root:
    return root / table / f"{load_id}.{part}.parquet"


@overload
def load_row_path(root: Path, load_id: str) -> Path: ...
@overload
def load_row_path(root: ObjectPath, load_id: str) -> ObjectPath: ...
def load_row_path(root: Root, load_id: str) -> Root:
    return root / LOADS_TABLE / f"{load_id}.parquet"


def load_id_of(part: Root) -> str:
    """The load id a part file belongs to (both the current and the pre-0.2 naming)."""
    return load_id_of_name(part.name)


def load_id_of_name(name: str) -> str:
    """`load_id_of` for a file name (a folder listing's entries: no Path made for each)."""
    stem = name.removesuffix(".parquet")
    if "." in stem:
        return stem.split(".", 1)[0]
    return stem.rsplit("-", 1)[0] if stem.count("-") >= 2 else stem


@overload
def write_part(table: pa.Table, path: Path, *, tag: str = "", sync_folder: bool = True) -> Path: ...
@overload
def write_part(table: pa.Table, path: ObjectPath, *, tag: str = "", sync_folder: bool = True) -> ObjectPath: ...
def write_part(table: pa.Table, path: Root, *, tag: str = "", sync_folder: bool = True) -> Root:
    """Write `table` to `path` atomically; returns `path` (`sync_folder`: see `files.write_atomically`)."""
    def write(sink: BinaryIO) -> None:
        names = [name for name in table.column_names if name not in _NO_DICTIONARY]
        pq.write_table(table, sink, compression="zstd", use_dictionary=names)
        crash_point("parquet-written")

    if isinstance(path, Path):
        return files.write_atomically(path, write, tag=tag, sync_folder=sync_folder)
    return objstore.write_atomically(path, write)


def write_chunk(root: Root, load_id: str, part: str, tables: dict[str, pa.Table]) -> list[Root]:
    """Land one chunk's tables; empty tables write no file, but for `fetch_log`, which is written last.

    A chunk lands whole or not at all: a failure removes the parts it wrote, and a kill leaves data
    parts without their `fetch_log` part, which recovery deletes. A chunk with no session of its own
    (the scenario definitions) passes an empty `fetch_log` to mark itself complete all the same.
    """
    written: list[Root] = []
    try:
        for name in sorted(tables, key=lambda n: n == "fetch_log"):
            if name not in LANDED_TABLES:
                raise ValueError(f"unknown landed table {name!r}")
            table = tables[name]
            if table.num_rows == 0 and name != "fetch_log":
                continue
            path = part_path(root, name, load_id, part)
            # the folders are fsynced once, by the commit (`write_load_row`), not once a part
            written.append(write_part(table.cast(LANDED_TABLES[name]), path, tag=load_id, sync_folder=False))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def write_load_row(root: Root, load_row: dict[str, object]) -> Root:
    """Land the `loads` row of a finished load: the last file of a load, which commits it.

    First the renames of the load's parts are made durable (one fsync a table folder), so that a
    committed load never lacks a part after a power cut.
    """
    load_id = str(load_row["load_id"])
    if isinstance(root, Path):  # an object store has no renames
        for table in LANDED_TABLES:
            if (root / table).is_dir():
                files.fsync_folder(root / table)
    table = pa.Table.from_pylist([load_row], schema=LOADS)
    return write_part(table, load_row_path(root, load_id), tag=load_id)


def read_load_row(root: Root, load_id: str) -> dict[str, object] | None:
    """The landed `loads` row of one load, if it got that far."""
    path = load_row_path(root, load_id)
    if not path.exists():
        return None
    rows: list[dict[str, object]] = objstore.read_table(path).to_pylist()
    return rows[0] if rows else None


def landed_load_rows(root: Root) -> set[str]:
    """The loads whose own `loads` row file is under `root/loads` (not those a compaction covers)."""
    folder = root / LOADS_TABLE
    if isinstance(folder, ObjectPath):
        return {name.removesuffix(".parquet") for name in folder.names()
                if name.endswith(".parquet") and not name.startswith(".")}
    if not folder.is_dir():
        return set()
    return {path.name.removesuffix(".parquet") for path in folder.glob("*.parquet")}


def read_manifest(root: Root) -> compacted.Manifest:
    """`compacted.read_manifest` of a local landing or of one on an object store."""
    if isinstance(root, Path):
        return compacted.read_manifest(root)
    path = root / compacted.COMPACTED_DIR / compacted.MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return compacted.Manifest()
    try:
        return compacted.Manifest.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise compacted.ManifestError(f"cannot read the compaction manifest {path}: {exc}") from exc


def write_manifest(root: Root, manifest: compacted.Manifest) -> Root:
    """`compacted.write_manifest` locally; on an object store one PUT, which replaces the manifest whole."""
    if isinstance(root, Path):
        return compacted.write_manifest(root, manifest)
    return objstore.write_text(root / compacted.COMPACTED_DIR / compacted.MANIFEST_FILE, manifest.to_json())


def committed_load_ids(root: Root) -> set[str]:
    """The loads committed under `root`: their `loads` row has landed, or a compaction holds their rows."""
    return landed_load_rows(root) | read_manifest(root).covered


def is_committed(root: Root, load_id: str) -> bool:
    return load_row_path(root, load_id).exists() or load_id in read_manifest(root).covered


@overload
def load_parts(root: Path, load_id: str, table: str) -> list[Path]: ...
@overload
def load_parts(root: ObjectPath, load_id: str, table: str) -> list[ObjectPath]: ...
def load_parts(root: Root, load_id: str, table: str) -> list[Path] | list[ObjectPath]:
    """The landed parts of one table for one load, in part-name order."""
    folder = root / table
    if isinstance(folder, ObjectPath):  # one listing, not one a pattern
        return [folder / name for name in sorted(folder.names(prefix=load_id))
                if name.endswith(".parquet") and name.startswith((f"{load_id}.", f"{load_id}-"))]
    if not folder.is_dir():
        return []
    return sorted({*folder.glob(f"{load_id}.*.parquet"), *folder.glob(f"{load_id}-*.parquet")})


def chunk_of(part: Root) -> str:
    """The part name shared by the files of one chunk (what follows the load id)."""
    return part.name.removesuffix(".parquet")


def remove_incomplete_chunks(root: Root, load_id: str) -> int:
    """Delete this load's data parts whose chunk never got its fetch-log part (the writer died in between)."""
    complete = {chunk_of(part) for part in load_parts(root, load_id, "fetch_log")}
    removed = 0
    for table in LANDED_TABLES:
        for part in load_parts(root, load_id, table):
            if chunk_of(part) not in complete:
                part.unlink(missing_ok=True)
                removed += 1
    return removed


def remove_temporary_files(root: Root, load_id: str) -> int:
    """Delete the temporary files this load's writer left behind (it was killed mid-write)."""
    if isinstance(root, ObjectPath):
        return 0  # a write there is one PUT: no temporary object
    removed = 0
    for tmp in root.glob(f"*/.*.{load_id}.*{files.TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def remove_load(root: Root, load_id: str) -> None:
    """Delete every file of one load under `root` (a staging area once merged, or a load that landed nothing)."""
    for table in LANDED_TABLES:
        for part in load_parts(root, load_id, table):
            part.unlink(missing_ok=True)
    load_row_path(root, load_id).unlink(missing_ok=True)
    remove_temporary_files(root, load_id)
