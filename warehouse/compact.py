"""Compaction of the Parquet landing: the small parts of many loads merged into few files, atomically for readers.

    result = compact(out_dir)                 # `piper-etl compact`: waits for a running compaction
    result = compact_after_load(out_dir)      # a load's commit: only past the threshold, never waits

**When.** A load that commits Parquet compacts when the committed loads no compaction covers yet
reach `AUTO_AFTER_LOADS`, or the files they landed reach `AUTO_AFTER_FILES` (the folder's setting
`auto` turns this off); `piper-etl compact` compacts whenever there is something to do.

**What.** Per table, independently: the parts of those loads, together with the table's small
compacted file (under `SMALL_FILE_BYTES`), become one new file. Compacted files of similar size then
merge, `MERGE_FACTOR` at a time (size-tiered: tier k holds files of SMALL x 4^(k-1) to SMALL x 4^k
bytes). So a row is rewritten about once per tier, log4(table size / SMALL) times in all, and a load's
compaction rewrites at most the small file plus what it adds; a load never does a merge whose inputs
exceed `AUTO_MERGE_MAX_BYTES` (those wait for `piper-etl compact`), so its cost does not grow with the
warehouse. Rows that can never be current again are dropped on the way, unless the folder's setting
`keep_superseded` is on: the rows of run versions that a newer committed version replaced (the rule
of `warehouse/merge.py`), dimension rows of a key that a newer committed load landed again, and
`fetch_log` rows the view already hid (a second row of one load and session). `loads`, `fetch_log`,
`rejected_payloads` and `sync_state` keep every row.

**Atomic for readers.** The new files get new names; one step under `leases.folder_lock` writes
`current_state.sql` naming them, then the manifest that commits them (`warehouse/compacted.py`).
The files and loads' parts they replace are retired, not deleted: they go once the grace period has
passed (`Settings.grace_seconds`), so a reader who read an older `current_state.sql` still finds them.

**Crash-safe.** Before its commit a compaction has only added files nobody names; after it, only
deletes what it retired. A kill at any point leaves the old state or the new one, and the next
compaction deletes what a dead one left (temporary files at once, its unnamed files after the grace
period). One compaction runs at a time (`OUT/_loads/.compact.lock`); it never covers a load whose
writer is alive, so a load committing meanwhile is left for the next compaction.

**On an object store** (`root` an `objstore.ObjectPath`, `out_dir` the landing's local state folder) the
same compaction runs under the same locks; files are uploaded whole instead of renamed, and what it
deletes goes in batches (`warehouse/compact_store.py`).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import secrets
import shutil
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from schemas.tables import DATA_TABLES, DIMENSION_KEYS, LANDED_TABLES
from warehouse import compact_store, compacted, files, landing, leases, objstore, publish, views
from warehouse.compacted import CompactedFile, Manifest, Retired, Settings
from warehouse.crash import crash_point
from warehouse.ddl import ALL_TABLES, quote_ident
from warehouse.objstore import ObjectPath, Root

AUTO_AFTER_LOADS = 4
"""A load compacts when this many committed loads are not covered by a compaction yet..."""
AUTO_AFTER_FILES = 24
"""... or when those loads landed this many files."""
SMALL_FILE_BYTES = 1024 * 1024
"""A compacted file under this size is small: each compaction of its table rewrites it with the new rows
(so this bounds what a load's compaction rewrites of the history, per table)."""
MERGE_FACTOR = 4
"""Compacted files of one tier merge into one when this many have gathered."""
AUTO_MERGE_MAX_BYTES = 16 * 1024 * 1024
"""The largest merge (sum of its inputs) a load's compaction does; larger ones wait for `piper-etl compact`
(at most four files of tier 1: a load does not rewrite the bulk of the history)."""
MEMORY_LIMIT = "256MB"
"""DuckDB's memory limit while compacting: it streams and spills beyond it."""
LOCK_FILE = ".compact.lock"
SPILL_DIR = ".compact-spill"
UPLOAD_DIR = ".compact-upload"
"""Where a compaction onto an object store writes each file before its upload (under `OUT/_loads`)."""

_LOAD_KEY = {table: "_load_id" for table in (*DATA_TABLES, *DIMENSION_KEYS)}  # else `load_id`


class CompactionBusy(RuntimeError):
    """Another compaction of this folder is running (only `compact_after_load` reports it, by returning None)."""


@dataclass(frozen=True)
class Compacted:
    """What one compaction did."""

    generation: int
    loads: int  # loads newly covered
    files_written: int
    files_retired: int  # compacted files and load parts replaced, deleted after the grace period
    files_deleted: int  # retired earlier, past their grace period now
    files_now: int  # committed files a reader names now

    def line(self) -> str:
        return (f"compaction {self.generation}: {self.loads} load(s) compacted, {self.files_written} file(s) "
                f"written, {self.files_retired} replaced, {self.files_deleted} deleted; "
                f"{self.files_now} file(s) hold the current state")


def compact(out_dir: Path, *, root: Root | None = None, now: float | None = None) -> Compacted:
    """Compact `out_dir/parquet` now (waiting for a compaction that runs), then delete what the grace period frees.

    `root`: the landing root when it is not `out_dir/parquet`: its URL on an object store
    (`s3://bucket/prefix/parquet`), with `out_dir` its local state folder (`objstore.state_folder`).
    """
    with _compaction_lock(out_dir, wait=True):
        return _compact(out_dir, _root(out_dir, root), manual=True, now=now)


def compact_after_load(out_dir: Path, *, root: Root | None = None, now: float | None = None) -> Compacted | None:
    """A load's compaction: only when the folder's setting allows it and the threshold is crossed.

    Never waits: when another compaction runs, that one or the next covers this load. Returns None
    when it did nothing (it may still have deleted retired files whose grace period ended). `root`: as `compact`.
    """
    root = _root(out_dir, root)
    manifest = landing.read_manifest(root)
    layout = views.read_layout(root)
    due = len(layout.pending_loads) >= AUTO_AFTER_LOADS or (
        sum(len(paths) for paths in layout.pending.values()) >= AUTO_AFTER_FILES)
    clock = time.time() if now is None else now
    expired = _expired(manifest, clock)
    if not ((due and manifest.settings.auto) or expired):
        return None
    try:
        with _compaction_lock(out_dir, wait=False):
            if due and manifest.settings.auto:
                return _compact(out_dir, root, manual=False, now=clock)
            _vacuum(root, landing.read_manifest(root), clock)
            return None
    except CompactionBusy:
        return None


def change_settings(out_dir: Path, settings: Settings, *, root: Root | None = None) -> Settings:
    """Store the folder's compaction settings in its manifest (they apply to every later compaction)."""
    root = _root(out_dir, root)
    with _compaction_lock(out_dir, wait=True), leases.folder_lock(out_dir):
        manifest = landing.read_manifest(root)
        if manifest.settings != settings:
            landing.write_manifest(root, manifest.with_settings(settings))
    return settings


def _root(out_dir: Path, root: Root | None) -> Root:
    return out_dir / landing.PARQUET_DIR if root is None else root


# -- one compaction ---------------------------------------------------------------------------------


def _compact(out_dir: Path, root: Root, *, manual: bool, now: float | None) -> Compacted:
    clock = time.time() if now is None else now
    manifest = landing.read_manifest(root)
    _remove_leftovers(root, manifest, clock)
    layout = views.read_layout(root)
    live = leases.live_load_ids(out_dir)  # after the listing: a load seen live there is not compacted
    inputs = sorted(layout.pending_loads - live)
    tag = f"g{manifest.generation + 1:06d}-{secrets.token_hex(3)}"
    spill = leases.loads_dir(out_dir) / SPILL_DIR
    con = _connect(spill)
    upload = leases.loads_dir(out_dir) / UPLOAD_DIR
    try:
        objstore.register(con, root)
        con.execute(views.current_state_sql(root.as_posix(), layout))
        writer = _Writer(con, root, tag, manifest.settings, layout, scratch=upload)
        index_adds = writer.prepare(inputs, reindex=not manifest.index_complete)
        plan = {table: list(manifest.table_files(table)) for table in (*ALL_TABLES, compacted.VERSIONS)}
        retired: list[str] = []
        for table in plan:
            new_parts = [path for path in layout.pending.get(table, [])
                         if landing.load_id_of(Path(path)) in inputs]
            if table == compacted.VERSIONS and index_adds:
                new_parts = [INDEX_ROWS]
            plan[table], replaced = _compact_table(writer, table, plan[table], new_parts, manual=manual)
            retired += replaced
        if writer.supersedes_indexed:  # the files it keeps may hold rows of versions the index now marks stale
            kept = set(manifest.all_paths())
            plan = {table: [replace(f, current=False) if f.path in kept else f for f in listed]
                    for table, listed in plan.items()}
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
        shutil.rmtree(upload, ignore_errors=True)
    loads_retired = [Retired(load_id, clock) for load_id in inputs]
    new = replace(
        manifest,
        generation=manifest.generation + 1,
        covered=manifest.covered | set(inputs),
        files={table: tuple(listed) for table, listed in plan.items() if listed},
        retired_files=(*manifest.retired_files, *(Retired(path, clock) for path in retired)),
        retired_loads=(*manifest.retired_loads, *loads_retired),
        indexed=True,
    )
    if writer.written or inputs or not manifest.index_complete:
        _commit(out_dir, root, new)
        manifest = new
    deleted = _vacuum(root, manifest, clock)
    return Compacted(
        generation=manifest.generation, loads=len(inputs), files_written=writer.written,
        files_retired=len(retired) + _parts_of(layout, inputs),
        files_deleted=deleted, files_now=views.read_layout(root).file_count(),
    )


def _parts_of(layout: views.Layout, load_ids: list[str]) -> int:
    wanted = set(load_ids)
    return sum(1 for paths in layout.pending.values() for path in paths
               if landing.load_id_of(Path(path)) in wanted)


def _compact_table(
    writer: _Writer, table: str, current: list[CompactedFile], new_parts: list[str], *, manual: bool
) -> tuple[list[CompactedFile], list[str]]:
    """The table's compacted files after this compaction, and the compacted files they replace."""
    replaced: list[str] = []
    files_now = list(current)
    if new_parts:
        small = [f for f in files_now if f.bytes < SMALL_FILE_BYTES]
        files_now = [f for f in files_now if f not in small]
        written = writer.write(table, [f.path for f in small], new_parts)
        files_now += [written] if written else []
        replaced += [f.path for f in small]
    while (group := _mergeable(files_now, manual=manual)) is not None:
        written = writer.write(table, [f.path for f in group], [])
        files_now = [f for f in files_now if f not in group] + ([written] if written else [])
        replaced += [f.path for f in group]
    return files_now, replaced


def tier(size: int) -> int:
    """0 for a small file, k for one of SMALL x 4^(k-1) up to SMALL x 4^k bytes."""
    if size < SMALL_FILE_BYTES:
        return 0
    return 1 + int(math.log(size / SMALL_FILE_BYTES, MERGE_FACTOR))


def _mergeable(listed: list[CompactedFile], *, manual: bool) -> list[CompactedFile] | None:
    """The first `MERGE_FACTOR` files of the lowest tier that has that many (a load's merges are capped)."""
    by_tier: dict[int, list[CompactedFile]] = {}
    for f in listed:
        if f.bytes >= SMALL_FILE_BYTES:
            by_tier.setdefault(tier(f.bytes), []).append(f)
    for _, group in sorted(by_tier.items()):
        if len(group) >= MERGE_FACTOR:
            chosen = group[:MERGE_FACTOR]
            if manual or sum(f.bytes for f in chosen) <= AUTO_MERGE_MAX_BYTES:
                return chosen
    return None


INDEX_ROWS = "compact_index_rows"
"""The temporary table of the run-version index rows a compaction adds (it stands in for the index's parts)."""


class _Writer:
    """Writes compacted files: the rows of some files of one table that can still be current.

    Which rows can: the views' own answer over the compaction's layout (`views.current_state_sql`),
    taken once into small temporary tables, for the versions and keys the written rows touch only.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, root: Root, tag: str, settings: Settings,
                 layout: views.Layout, *, scratch: Path) -> None:
        self.con, self.root, self.tag, self.settings, self.layout = con, root, tag, settings, layout
        self.scratch = scratch  # the local folder of the files bound for an object store
        self.written = 0
        self.supersedes_indexed = True  # until `prepare` knows: whether kept data files may now hold stale rows

    def prepare(self, inputs: list[str], *, reindex: bool) -> bool:
        """The index rows for the loads `inputs` and the versions whose rows to keep; whether the index grows.

        New versions get their `is_current` among the covered loads (the index and `inputs`: a live load
        not covered yet does not count); indexed versions they supersede get a row with `is_current`
        false. `reindex`: the manifest predates the index; its versions (ranked from the compacted
        `fetch_log` by the views) are written too.
        """
        con = self.con
        con.execute("CREATE TEMP TABLE compact_inputs AS SELECT unnest(?::VARCHAR[]) AS load_id", [inputs])
        con.execute("CREATE TEMP TABLE compact_new AS SELECT v.* FROM _pending_versions AS v "
                    "SEMI JOIN compact_inputs AS c ON v.load_id = c.load_id")
        con.execute(f"CREATE TEMP TABLE compact_contest AS {views.contest_sql('compact_new')}")
        con.execute(
            f"CREATE TEMP TABLE {INDEX_ROWS} AS "
            "SELECT run_id, session_id, load_id, load_seq, newest AS is_current FROM compact_contest WHERE pending\n"
            "UNION ALL SELECT run_id, session_id, load_id, load_seq, false FROM compact_contest\n"
            "    WHERE NOT pending AND is_current AND NOT newest"
            + ("\nUNION ALL SELECT run_id, session_id, load_id, load_seq, is_current FROM _indexed_versions"
               if reindex else "")
        )
        con.execute("CREATE TEMP TABLE compact_stale AS SELECT * FROM _stale_versions")
        kept = "_pending_versions" if self.settings.keep_superseded else views.PENDING_CURRENT
        con.execute(f"CREATE TEMP TABLE compact_kept AS SELECT run_id, session_id, load_id FROM {kept}")
        self.supersedes_indexed = reindex or _count(
            con, "SELECT count(*) FROM compact_contest WHERE NOT pending AND is_current AND NOT newest") > 0
        return reindex or _count(con, f"SELECT count(*) FROM {INDEX_ROWS}") > 0

    def write(self, table: str, compacted_paths: list[str], parts: list[str]) -> CompactedFile | None:
        """One new file from compacted files and new parts (paths relative to the root); None when no row remains."""
        self.written += 1
        relative = f"{compacted.COMPACTED_DIR}/{table}/{self.tag}-{self.written:04d}.parquet"
        target = self.root / relative
        if isinstance(target, ObjectPath):  # written here, then uploaded whole
            self.scratch.mkdir(parents=True, exist_ok=True)
            tmp = self.scratch / target.name
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = files.temporary_name(target, "compact")
        query = self._rows(table, compacted_paths, parts)
        try:
            self.con.execute(
                f"COPY ({query}) TO '{_literal(tmp.as_posix())}' "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 16384, ROW_GROUP_SIZE_BYTES '16MB')"
            )
            rows = _rows(tmp)
            if rows == 0:
                self.written -= 1
                return None
            size = tmp.stat().st_size
            if isinstance(target, ObjectPath):
                objstore.upload(tmp, target)
            else:
                _fsync(tmp)
                os.replace(tmp, target)
                files.fsync_folder(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
        crash_point("compact-written")
        # data rows written without every version stale now (`_rows`), unless superseded rows are kept
        current = table in DATA_TABLES and not self.settings.keep_superseded
        return CompactedFile(relative, size, rows, current=current)

    def _rows(self, table: str, compacted_paths: list[str], parts: list[str]) -> str:
        """The rows of these files that a reader may still see (module docstring: what is dropped)."""
        root, keep = self.root.as_posix(), self.settings.keep_superseded
        if table == compacted.VERSIONS:  # one row a version: a false row wins (a version never comes back)
            sources = [f"SELECT * FROM {views.read_files_sql(root, compacted_paths)}"] if compacted_paths else []
            sources += [f"SELECT * FROM {INDEX_ROWS}"] if parts else []
            return ("SELECT run_id, session_id, load_id, any_value(load_seq) AS load_seq, "
                    f"bool_and(is_current) AS is_current FROM ({' UNION ALL '.join(sources)}) "
                    "GROUP BY run_id, session_id, load_id")
        if table in DATA_TABLES:
            selects = []
            if compacted_paths:
                selects.append(f"SELECT landed.* FROM {views.source_sql(root, table, compacted_paths)} AS landed"
                               + ("" if keep else "\nANTI JOIN compact_stale AS v ON "
                                  + views.version_match("landed", "v")))
            if parts:
                selects.append(f"SELECT landed.* FROM {views.source_sql(root, table, parts)} AS landed\n"
                               f"SEMI JOIN compact_kept AS v ON {views.version_match('landed', 'v')}")
            return "\nUNION ALL\n".join(selects)
        landed = views.source_sql(root, table, [*compacted_paths, *parts])
        if table == "fetch_log":
            return f"SELECT * FROM {landed} AS landed\n{views.FETCH_LOG_NEWEST}"
        if table in DIMENSION_KEYS and not keep:
            return self._newest_of_their_keys(table, landed)
        return f"SELECT * FROM {landed} AS landed"

    def _newest_of_their_keys(self, table: str, landed: str) -> str:
        """The rows of `landed` whose load is the newest to land their key, among the committed files of
        the keys in `landed` only (a key's newer rows may be in any file)."""
        key = quote_ident(DIMENSION_KEYS[table])
        every = views.source_sql(self.root.as_posix(), table, self.layout.paths(table))
        return (
            f"SELECT landed.* FROM {landed} AS landed SEMI JOIN (\n"
            f"    SELECT d.{key}, d._load_id FROM (SELECT DISTINCT {key}, _load_id FROM {every}\n"
            f"        WHERE {key} IN (SELECT {key} FROM {landed})) AS d\n"
            "    JOIN loads l ON l.load_id = d._load_id\n"
            f"    QUALIFY rank() OVER (PARTITION BY d.{key}\n"
            "                         ORDER BY coalesce(l.load_seq, 0) DESC, d._load_id DESC) = 1\n"
            f") AS newest ON landed.{key} = newest.{key} AND landed._load_id = newest._load_id"
        )


def _commit(out_dir: Path, root: Root, new: Manifest) -> None:
    """`current_state.sql` naming the new files, then the manifest that commits them, as one step for loads.

    In this order a kill in between leaves an SQL file naming files no manifest names: they hold the
    same current state, and they are deleted only after the grace period, like retired ones.
    """
    with leases.folder_lock(out_dir):
        publish.write_current_state_unlocked(out_dir, root, views.read_layout(root, manifest=new), new)
        crash_point("compact-sql-written")
        landing.write_manifest(root, new)
    crash_point("compact-committed")


# -- deleting what the grace period frees -------------------------------------------------------------


def _expired(manifest: Manifest, now: float) -> bool:
    grace = manifest.settings.grace_seconds
    return any(r.retired_at + grace <= now for r in (*manifest.retired_files, *manifest.retired_loads))


def _vacuum(root: Root, manifest: Manifest, now: float) -> int:
    """Delete retired files and loads' parts past their grace period; drop them from the manifest."""
    grace = manifest.settings.grace_seconds
    if isinstance(root, ObjectPath):
        deleted = compact_store.delete_retired(
            root, [r.name for r in manifest.retired_files if r.retired_at + grace <= now],
            [r.name for r in manifest.retired_loads if r.retired_at + grace <= now])
    else:
        deleted = _delete_retired(root, manifest, now)
    keep_files = tuple(r for r in manifest.retired_files if r.retired_at + grace > now)
    keep_loads = tuple(r for r in manifest.retired_loads if r.retired_at + grace > now)
    if (keep_files, keep_loads) != (manifest.retired_files, manifest.retired_loads):
        landing.write_manifest(root, replace(manifest, retired_files=keep_files, retired_loads=keep_loads))
    return deleted


def _delete_retired(root: Path, manifest: Manifest, now: float) -> int:
    grace = manifest.settings.grace_seconds
    deleted = 0
    for retired in manifest.retired_files:
        if retired.retired_at + grace <= now:
            deleted += _unlink(root / retired.name)
            crash_point("compact-vacuum")
    for retired in manifest.retired_loads:
        if retired.retired_at + grace <= now:
            for table in LANDED_TABLES:
                for part in landing.load_parts(root, retired.name, table):
                    deleted += _unlink(part)
                    crash_point("compact-vacuum")
            deleted += _unlink(landing.load_row_path(root, retired.name))  # last: it names the load
    return deleted


def _remove_leftovers(root: Root, manifest: Manifest, now: float) -> None:
    """What a dead compaction left: its temporary files (no one else writes here now), and its files
    that no manifest names once the grace period has passed (a reader may have read its SQL file)."""
    named = manifest.all_paths() | {r.name for r in manifest.retired_files}
    if isinstance(root, ObjectPath):  # no temporary objects there: an upload is whole or absent
        compact_store.remove_leftovers(root, named, manifest.settings.grace_seconds, now)
        return
    folder = compacted.compacted_dir(root)
    if not folder.is_dir():
        return
    for path in folder.glob("*/*"):
        unnamed = path.relative_to(root).as_posix() not in named
        if files.is_temporary(path) or (unnamed and path.stat().st_mtime + manifest.settings.grace_seconds <= now):
            _unlink(path)
    for tmp in folder.glob(f".*{files.TMP_SUFFIX}"):
        _unlink(tmp)


# -- helpers ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _compaction_lock(out_dir: Path, *, wait: bool) -> Iterator[None]:
    folder = leases.loads_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompactionBusy(f"another compaction of {out_dir} is running") from None
        yield
    finally:
        os.close(fd)


def _connect(spill: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "preserve_insertion_order": False,
                                 "temp_directory": str(spill)})
    con.execute("SET TimeZone = 'UTC'")
    return con


def _rows(path: Path) -> int:
    return int(pq.read_metadata(path).num_rows)


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1


def _literal(text: str) -> str:
    return text.replace("'", "''")


def load_key(table: str) -> str:
    """The column naming the load a row of `table` came from."""
    return _LOAD_KEY.get(table, "load_id")


# -- the way back, for DuckDB ------------------------------------------------------------------------


def covered_load_rows(root: Root, load_ids: Collection[str]) -> list[dict[str, object]]:
    """The `loads` rows of these loads, from the compacted `loads` files (one row a load: small)."""
    wanted = set(load_ids)
    rows: list[dict[str, object]] = []
    for f in landing.read_manifest(root).table_files(landing.LOADS_TABLE) if wanted else ():
        rows += [row for row in objstore.read_table(root / f.path).to_pylist() if row["load_id"] in wanted]
    return rows


def extract_load(root: Root, load_id: str, target: Path) -> None:
    """Write what the compacted files hold of one covered load as that load's parts under `target`.

    So that DuckDB, catching up with a load it lacks (`warehouse/recovery.py`), merges it as it merges
    any landed load. Rows compaction dropped were superseded by a committed load, which DuckDB merges
    too, so the database ends in the same state as if it had merged the load's own parts.
    """
    manifest = landing.read_manifest(root)
    con = _connect(target / SPILL_DIR)
    try:
        objstore.register(con, root)
        for table in LANDED_TABLES:
            paths = [f.path for f in manifest.table_files(table)]
            if not paths:
                continue
            part = landing.part_path(target, table, load_id, "compacted")
            part.parent.mkdir(parents=True, exist_ok=True)
            key = quote_ident(load_key(table))
            con.execute(
                f"COPY (SELECT * FROM {views.source_sql(root.as_posix(), table, paths)} "
                f"WHERE {key} = '{_literal(load_id)}') TO '{_literal(part.as_posix())}' (FORMAT parquet)"
            )
            if _rows(part) == 0:
                part.unlink()
    finally:
        con.close()
        shutil.rmtree(target / SPILL_DIR, ignore_errors=True)
