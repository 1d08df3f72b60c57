"""A load's writes as one transaction: open it, land chunks, commit; nothing is visible before the commit.

    with open_load(out_dir, format="both", lock_timeout=30, expected_sessions=n) as load:
        skipped = load.stored_final_runs(session_ids)
        load.land("main-0001", tables)        # or, in another process: land_chunk(load.target, ...)
        committed = load.commit(status, counts, parameters, prices=None)

Opening a load takes its lease (`warehouse/leases.py`), finishes what dead loads left
(`warehouse/recovery.py`), and, when the load writes DuckDB and nobody else holds the database,
opens it as the writer and catches it up with the Parquet files. The commit lands the `loads` row
(the Parquet commit), merges into DuckDB in one transaction, then publishes the views, the prices and
the BI snapshot. Leaving the block without a commit (an error, Ctrl-C) rolls the DuckDB transaction
back and releases the lease; the chunks already landed are committed as `recovered` by the next load.

Chunks are inserted into the open DuckDB transaction while the load still fetches, by a worker thread
of this object (`land` hands it each chunk; chunks landed by other processes are found in the landing
folder), for loads of up to `MERGE_WHILE_FETCHING_UP_TO` sessions: see docs/performance.md, merge.

The landing may be on an object store (`open_load(state_dir, landing_url="s3://bucket/prefix", ...)`,
`warehouse/objstore.py`): its Parquet files then go there, under the same layout, while the load's local
state (leases, the sequence, the DuckDB file at `database`) stays in the local folder `out_dir`.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

import duckdb
import pyarrow as pa

from warehouse import compact, files, landing, leases, objstore, publish, recovery, store, sync_reads, views
from warehouse.crash import crash_point
from warehouse.merge import Merge
from warehouse.objstore import Root
from warehouse.pricing import PriceList
from warehouse.records import LoadCounts, load_row

logger = logging.getLogger(__name__)

OutputFormat = Literal["duckdb", "parquet", "both"]
T = TypeVar("T")
FORMATS: tuple[OutputFormat, ...] = ("duckdb", "parquet", "both")


def stores(format: OutputFormat) -> tuple[str, ...]:
    """The stores a format writes: "parquet", "duckdb" or both."""
    return tuple(store for store in ("parquet", "duckdb") if format in (store, "both"))
MERGE_WHILE_FETCHING_UP_TO = 20_000
"""The most sessions a load fetches for which its DuckDB transaction is open while it fetches.

An open transaction holds DuckDB's memory for as long as the load fetches; larger loads merge after
their fetch, where those seconds matter less (docs/performance.md, memory).
"""
WATCH_INTERVAL = 0.05
"""Seconds between two looks into the landing folder for chunks landed by other processes (Prefect tasks)."""
STORE_WATCH_INTERVAL = 1.0
"""The same on an object store, where each look is a paid LIST request: a chunk is merged up to 1 s later."""

_WAKE = ""  # not a part name: wakes the worker thread so that it starts watching


@dataclass(frozen=True)
class LoadTarget:
    """Where one load's chunks land: plain values, safe to hand to a Prefect task in another process."""

    load_id: str
    landing_root: str  # a local folder, or a folder URL on an object store
    loaded_at: datetime


@dataclass(frozen=True)
class Committed:
    """What the commit did: the `loads` row, and the verdict summary of the load's own runs if asked."""

    load_row: dict[str, object]
    verdicts_markdown: str | None = None


def land_chunk(target: LoadTarget, part: str, tables: Mapping[str, pa.Table]) -> None:
    """Write one chunk's tables as Parquet parts of the load (whole or not at all)."""
    landing.write_chunk(objstore.landing_root(target.landing_root), target.load_id, part, dict(tables))


class LoadTransaction:
    """One load's writes into one output folder; made by `open_load`, ended by `commit` or by leaving the block."""

    def __init__(
        self, out_dir: Path, lease: leases.Lease, started_at: datetime, lock_timeout: float,
        storage_version: str = store.DEFAULT_STORAGE_VERSION, *, store_root: Root | None = None,
        database: Path | None = None,
    ) -> None:
        self.out_dir, self.lock_timeout = out_dir, lock_timeout
        self.store_root: Root = out_dir if store_root is None else store_root  # where parquet/ lands
        self.parquet_root: Root = self.store_root / landing.PARQUET_DIR
        self.database = out_dir / store.DATABASE_FILE if database is None else database
        self.storage_version = storage_version  # of the DuckDB files this load creates (store.connect, snapshot)
        self.started_at = started_at
        self._lease = lease
        self.load_id = lease.manifest.load_id
        self.load_seq = lease.manifest.load_seq
        self.root = objstore.under(out_dir, lease.manifest.landing_root)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._merge: Merge | None = None
        self._inserter: _Inserter | None = None
        self._insert_while_fetching = False
        self._fetching = False
        self.done = False

    @property
    def writes_parquet(self) -> bool:
        return "parquet" in self._lease.manifest.formats

    @property
    def writes_duckdb(self) -> bool:
        return "duckdb" in self._lease.manifest.formats

    @property
    def target(self) -> LoadTarget:
        return LoadTarget(self.load_id, str(self.root), self.started_at)

    def __enter__(self) -> LoadTransaction:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- before fetching -------------------------------------------------------------------------

    def stored_final_runs(self, session_ids: list[str]) -> dict[str, str]:
        """session_id -> run_id for the sessions whose current run is final in every store this load writes.

        Read as `reading_state` says; without the database (another writer holds it) `duckdb` skips nothing.
        """
        if not session_ids:
            return {}
        if self._reads_parquet:
            # The Parquet files answer, as `reading_state` would, but reading only what decides these sessions.
            found = store.landed_final_session_runs(self.parquet_root, session_ids)
            return {session: run for session, (run, _) in found.items()}
        return self._read_state(lambda con: store.final_session_runs(con, session_ids))

    def stored_dimension(
        self, table: str, keys: Iterable[str], columns: Sequence[str]
    ) -> dict[str, dict[str, object]]:
        """key -> the named columns of the current row of each key in a dimension table (`sessions`, `scenarios`).

        Only the requested keys are read; a key without a row is absent. Read as `reading_state` says.
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        if self._reads_parquet:
            # The Parquet files answer, as `reading_state` would, but reading only that table's rows of these keys.
            found = store.landed_dimension_rows(self.parquet_root, table, wanted, columns)
            return {key: row for key, (row, _) in found.items()}
        return self._read_state(lambda con: store.dimension_rows(con, table, wanted, columns))

    @property
    def _reads_parquet(self) -> bool:
        """Whether the state this load builds on is that of the Parquet files (`reading_state`)."""
        return self.writes_parquet and not (self.writes_duckdb and self._con is not None)

    def _read_state(self, read: Callable[[duckdb.DuckDBPyConnection], dict[str, tuple[T, str]]]) -> dict[str, T]:
        """What `read` finds (key -> (value, load_id of its row)) in `reading_state`, of committed loads only."""
        with self.reading_state() as state:
            if state is None:
                return {}
            try:
                found = read(state.con)
            except duckdb.CatalogException:  # a database no load of this version has written yet
                return {}
        return {key: value for key, (value, load_id) in found.items()
                if state.committed is None or load_id in state.committed}

    @contextmanager
    def reading_state(self) -> Iterator[sync_reads.StateView | None]:
        """The committed state this load builds on (its reads, and the sync's); None when no store can be read.

        DuckDB when this load holds it, through a cursor of its own (the inserter thread may be using the
        connection, and a cursor sees the committed state, not this load's inserts); for `both`, only
        rows whose load is also committed in the Parquet files count (`StateView.committed`). Without
        the database (another writer holds it) `both` and `parquet` read the Parquet files (DuckDB
        catches up with them at the commit), and `duckdb` reads the database read-only if nobody
        writes it right now, else nothing.
        """
        parquet_root = self.parquet_root
        if self.writes_duckdb and self._con is not None:
            committed = frozenset(landing.committed_load_ids(parquet_root)) if self.writes_parquet else None
            cursor = self._con.cursor()
            try:
                cursor.execute(f"USE {store.CATALOG}")
                yield sync_reads.StateView(cursor, committed)
            finally:
                cursor.close()
            return
        if self.writes_parquet:
            if not views.present_tables(parquet_root):
                yield None
                return
            con = views.open_current_state(parquet_root)
        else:
            try:
                con = store.connect(self.database, read_only=True, lock_timeout=0)
            except (store.WarehouseLocked, duckdb.Error):
                yield None
                return
        try:
            yield sync_reads.StateView(con, parquet_root=parquet_root if self.writes_parquet else None)
        finally:
            con.close()

    def expect_sessions(self, sessions: int) -> None:
        """How many sessions the load will fetch, once known after `open_load` (a sync knows after listing)."""
        if sessions > MERGE_WHILE_FETCHING_UP_TO:
            self._insert_while_fetching = False

    # -- while fetching --------------------------------------------------------------------------

    def land(self, part: str, tables: Mapping[str, pa.Table]) -> None:
        """Land one chunk; while the DuckDB transaction is open, its rows are inserted by the worker thread."""
        self._begin_fetching(watch=False)
        land_chunk(self.target, part, tables)
        if self._inserter is not None:
            self._inserter.put(part)

    def watch(self) -> None:
        """Insert the chunks that other processes land for this load as they appear (the flow's tasks)."""
        self._begin_fetching(watch=True)
        if self._inserter is not None and not self._inserter.watching:
            self._inserter.watching = True
            self._inserter.put(_WAKE)

    def _begin_fetching(self, *, watch: bool) -> None:
        """On the first chunk: open the DuckDB transaction the chunks go into, or let the database go."""
        if self._fetching:
            return
        self._fetching = True
        if self._con is None:
            return
        if not self._insert_while_fetching:
            self._con.close()  # merged after the fetch: do not hold the lock (and DuckDB's memory) meanwhile
            self._con = None
            return
        self._merge = Merge(self._con, self.root, self.load_id)
        self._inserter = _Inserter(self._merge, self.root / "fetch_log", self.load_id, watch=watch)
        self._inserter.start()

    # -- the end ---------------------------------------------------------------------------------

    def commit(
        self, status: str, counts: LoadCounts, parameters: Mapping[str, object], *,
        prices: PriceList | None = None, summarize: bool = False,
    ) -> Committed:
        """Land the `loads` row, merge into DuckDB, publish; raises `store.WarehouseLocked` when the database
        stays locked for `lock_timeout` (the Parquet commit stands; the next load merges this one).
        """
        if self.done:
            raise RuntimeError(f"load {self.load_id} has ended already")
        self._stop_inserting()
        row = load_row(load_id=self.load_id, load_seq=self.load_seq, started_at=self.started_at,
                       finished_at=datetime.now(UTC), status=status, counts=counts, parameters=parameters)
        landing.write_load_row(self.root, row)  # the Parquet commit; for a duckdb-only load, its intent
        now = datetime.now(UTC)
        parquet_root = self.parquet_root
        if self.writes_parquet:
            publish.publish_parquet(self.out_dir, parquet_root, prices, now)
        verdicts: str | None = None
        if self.writes_duckdb:
            con = self._writer(wait=True)
            if self._merge is None:
                recovery.catch_up(con, parquet_root, state_dir=self.out_dir)
                if self.load_id not in store.merged_load_ids(con):
                    self._merge = Merge(con, self.root, self.load_id)
            if self._merge is not None:
                self._merge.commit(row)
                self._merge = None
            crash_point("merged")
            verdicts = publish.publish_duckdb(con, self.out_dir, prices, now, summarize=summarize,
                                              load_id=self.load_id, storage_version=self.storage_version)
            if not self.writes_parquet:
                landing.remove_load(self.root, self.load_id)
                if isinstance(self.root, Path):  # an object store has no folders to prune
                    files.prune_empty_folders(self.root)
        elif summarize:
            verdicts = publish.parquet_load_summary_markdown(parquet_root, self.load_id)
        self.done = True
        self.close()
        if self.writes_parquet:  # after the lease is gone, so that the compaction may cover this load too
            try:
                compact.compact_after_load(self.out_dir, root=parquet_root)
            except Exception as exc:  # the load stands committed: its compaction is only housekeeping
                logger.warning("load %s is committed, but compacting the Parquet files failed (the next load "
                               "or `piper-etl compact` tries again): %s", self.load_id, exc)
        return Committed(row, verdicts)

    def close(self) -> None:
        """Roll back what was not committed, close the database and release the lease; idempotent."""
        try:
            self._stop_inserting(raise_error=False)
            if self._merge is not None:
                self._merge.rollback()
                self._merge = None
        finally:
            if self._con is not None:
                self._con.close()
                self._con = None
            if self._lease.held:
                # After a commit the files need nobody; otherwise the next load recovers them.
                self._lease.release(forget=self.done)

    # -- the DuckDB writer -----------------------------------------------------------------------

    def _recover(self, dead: list[leases.Lease], expected_sessions: int) -> None:
        """Finish what dead loads left; when this load writes DuckDB and the database is free, take it now."""
        con = None
        if self.writes_duckdb:
            try:
                con = self._writer(wait=False)
            except store.WarehouseLocked:
                con = None  # its holder is a live load; this one merges after its fetch
        recovery.recover(self.out_dir, dead, con)
        if con is not None:
            recovery.recover_orphans(self.out_dir, con, mine={self.load_id})
            recovery.catch_up(con, self.parquet_root, state_dir=self.out_dir)
            self._insert_while_fetching = expected_sessions <= MERGE_WHILE_FETCHING_UP_TO

    def _writer(self, *, wait: bool) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            if wait:
                release_unused_memory()
            self._con = store.connect(self.database, lock_timeout=self.lock_timeout if wait else 0,
                                      storage_version=self.storage_version)
            objstore.register(self._con, self.store_root)  # the merge reads the parts where they landed
        return self._con

    def _stop_inserting(self, *, raise_error: bool = True) -> None:
        inserter, self._inserter = self._inserter, None
        if inserter is not None:
            inserter.finish(raise_error=raise_error)


class _Inserter(threading.Thread):
    """Inserts landed chunks into the open DuckDB transaction, one at a time, off the fetching thread."""

    def __init__(self, merge: Merge, fetch_log_folder: Root, load_id: str, *, watch: bool) -> None:
        super().__init__(name=f"piper-insert-{load_id}", daemon=True)
        self.merge, self.fetch_log_folder, self.load_id = merge, fetch_log_folder, load_id
        self.parts: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.watching = watch
        self.interval = WATCH_INTERVAL if isinstance(fetch_log_folder, Path) else STORE_WATCH_INTERVAL
        self.seen: set[str] = set()
        self.error: BaseException | None = None

    def put(self, part: str) -> None:
        self.parts.put(part)

    def run(self) -> None:
        while True:
            try:
                part = self.parts.get(timeout=self.interval) if self.watching else self.parts.get()
            except queue.Empty:
                for found in self._landed_elsewhere():
                    self.parts.put(found)
                continue
            if part is None:
                return
            if part == _WAKE or part in self.seen or self.error is not None:
                continue
            self.seen.add(part)
            try:
                self.merge.insert_chunk(part)
            except BaseException as exc:  # reported by `finish`, on the thread that commits
                self.error = exc

    def _landed_elsewhere(self) -> list[str]:
        prefix, suffix = f"{self.load_id}.", ".parquet"
        parts = (name[len(prefix) : -len(suffix)] for name in objstore.names(self.fetch_log_folder, prefix)
                 if name.endswith(suffix))
        return [part for part in parts if part not in self.seen]

    def finish(self, *, raise_error: bool) -> None:
        self.parts.put(None)
        self.join()
        if raise_error and self.error is not None:
            raise self.error


def release_unused_memory() -> None:
    """Hand back what the fetch freed but kept before DuckDB takes its share (docs/performance.md, memory).

    pyarrow's allocator keeps freed buffers for reuse, and reference cycles wait for the cycle collector.
    """
    gc.collect()
    pa.default_memory_pool().release_unused()


def open_load(
    out_dir: Path, *, format: OutputFormat, lock_timeout: float = 30.0, expected_sessions: int = 0,
    now: datetime | None = None, storage_version: str = store.DEFAULT_STORAGE_VERSION,
    landing_url: str | None = None, database: Path | None = None,
) -> LoadTransaction:
    """Begin a load into `out_dir`: take its lease, recover what dead loads left, and take DuckDB if free.

    `landing_url`: the folder URL on an object store (`s3://bucket/prefix`) the Parquet files land in,
    with `out_dir` the local folder of the load state; `database`: the DuckDB file (default
    `out_dir/piper.duckdb`). Loads into one `landing_url` must share one `out_dir` (docs/scale-out.md).

    `now` (a seam for tests of clock steps): the load's start time; its order among loads
    (`load_seq`) never falls below that of an earlier load, whatever the clock says.
    `storage_version`: the DuckDB storage version of the DuckDB files the load creates (docs/bi.md).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    started_at = now or datetime.now(UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = stores(format)
    store_root = None if landing_url is None else objstore.ObjectPath(landing_url)
    if store_root is not None:
        objstore.check_reachable(store_root)
    relative = landing.PARQUET_DIR if "parquet" in formats else landing.STAGING_DIR
    lease = leases.begin(
        out_dir,
        load_id=landing.new_load_id(started_at),
        formats=formats,
        landing_root=relative if store_root is None else (store_root / relative).as_posix(),
        started_at=started_at,
    )
    load = LoadTransaction(out_dir, lease, started_at, lock_timeout, storage_version, store_root=store_root,
                           database=database)
    try:
        load._recover(leases.claim_dead(out_dir), expected_sessions)
    except BaseException:
        load.close()
        raise
    return load
