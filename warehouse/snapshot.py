"""The read-only snapshot `OUT/piper-bi.duckdb` that dashboards open instead of the load's database.

A DuckDB file has either one writer process or several read-only ones, never both. If dashboards
opened `piper.duckdb`, a scheduled load would fail while one is open, and a dashboard opening it in the
middle of a merge would wait or fail. So after every merge the load, still holding the database's lock
(no other process can write it), publishes a copy, and the cost of that publish follows what the load
changed, not the size of the database:

* Two standby copies live in `OUT/_bi/` (`a.duckdb`, `b.duckdb`); `piper-bi.duckdb` is a hard link
  to the one published last. A publish writes the *other* one, never the file readers are sent to.
* That standby is attached read-write by the writer's DuckDB. DuckDB takes an exclusive lock to do so,
  which it cannot get while any other process has the file open read-only: so a failed attach says
  that a dashboard still reads it (one that opened the snapshot two publishes ago), and a successful
  one that nobody does. On Linux, this process's own open files are checked too (POSIX locks do not
  conflict within one process).
* The standby is brought up to date with only the loads of `loads` it lacks, in one transaction, by
  the kinds of `schemas/tables.py`. `DATA_TABLES`: the standby's run versions (run_id, session_id,
  _load_id of its `runs`) sharing a run_id or session_id with those loads' `fetch_log` 'loaded' rows
  and no longer current in the database lose their rows (a merge makes no other version stale, see
  warehouse/merge.py), and the database's rows of those loads, all current, are inserted; what did
  not change is neither read nor written again. `DIMENSION_KEYS`: every key whose rows now come from
  those loads gets the database's rows. `HISTORY_TABLES` and `loads`: those loads' rows. `token_prices`
  is replaced whole (a handful of rows); the views are recreated from the writer's own SQL when their
  text differs. The loads a standby lacks are the last ones the database merged (else it is replaced
  whole), so their rows are the last rows of each of the database's tables: every read of them is
  bounded by a rowid found by looking back from the table's end (`_tail_start`), and costs what the
  loads added, however long the table. (A `_load_id = ?` alone would read every row group of the
  loads of the same day: DuckDB's row-group statistics keep the first 8 bytes of a string, and a
  load id begins with its date.) They are inserted without a DELETE first: the standby holds no row
  of a load its `loads` lacks (by construction; `_rows_of_loads` checks the end of each table, where
  rows are added, and a standby that does is replaced whole). Then CHECKPOINT and DETACH, so that
  the file alone holds every row (a reader of `piper-bi.duckdb` never sees a WAL named `a.duckdb.wal`).
* Publishing is a hard link to a temporary name renamed over `piper-bi.duckdb`: atomic, so a new
  connection opens the previous complete snapshot or the new one; a connection opened earlier keeps the
  file it opened, which no publish writes while it is published or held.

A database smaller than `COPY_BELOW_BYTES` and already in the storage format wanted is copied whole
instead: below that size a byte copy (one sequential write) takes less time than updating a standby
(an ATTACH, a transaction, a CHECKPOINT), and it leaves nothing behind for the other standby to catch
up with (docs/bi.md has the measurement). A database in another format is not converted every load:
its standbys are converted once and then updated.

When the standby cannot be updated (it does not exist yet, cannot be opened, has an older table
layout, holds loads the database does not, or a reader holds it) it is replaced by a whole copy of the
database, taken right after the CHECKPOINT of `analytics.install` (the file alone holds every committed
row); an INFO log line says why. A kill at any point leaves the published file untouched, and the
standby either as it was or with the new loads: its `loads` table always says what it holds.

Why not the alternatives: a reflink (`copy_file_range` on XFS or btrfs) is cheap only on file
systems that share extents, and ext4 or overlayfs (most containers) would still copy every byte; a
copy of the changed pages would need DuckDB's block layout. Two standbys cost twice the database's
size on disk (docs/bi.md), for a publish that writes what the load changed.

On Windows a file held open cannot be replaced: the publish is then skipped with a warning and the
load still succeeds; the next load publishes again.

Older DuckDB readers: the standbys are kept in the storage format of the `storage_version` the load
was given (`store.DEFAULT_STORAGE_VERSION`). A standby in another format is replaced by a whole copy,
which is the database's bytes when the database is in that format, else a `COPY FROM DATABASE` into
a new file created in it (a database created by a piper-etl that wrote DuckDB's newest format).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import duckdb

from schemas.tables import DATA_TABLES, DIMENSION_KEYS, HISTORY_TABLES
from warehouse import files, store
from warehouse.crash import crash_point
from warehouse.ddl import quote_ident

SNAPSHOT_FILE = "piper-bi.duckdb"
STANDBY_DIR = "_bi"
STANDBY_FILES = ("a.duckdb", "b.duckdb")
STANDBY_CATALOG = "piper_bi"
CONVERTED_CATALOG = "piper_bi_converted"
_COPY_BUFFER = 1 << 20
COPY_BELOW_BYTES = 100 * 2**20
"""Below this size of `piper.duckdb` a publish copies the database whole (module docstring)."""
COPY_BELOW_ENV = "PIPER_ETL_SNAPSHOT_COPY_BELOW"
"""Overrides `COPY_BELOW_BYTES` (bytes): tests set 0 to update standbys of tiny databases too."""
logger = logging.getLogger(__name__)


class SnapshotError(RuntimeError):
    """The database cannot be copied whole: it has a write-ahead log (no CHECKPOINT since the last write)."""


def snapshot_path(out_dir: Path) -> Path:
    return out_dir / SNAPSHOT_FILE


def standby_paths(out_dir: Path) -> list[Path]:
    return [out_dir / STANDBY_DIR / name for name in STANDBY_FILES]


def publish(
    con: duckdb.DuckDBPyConnection, out_dir: Path, views_sql: str, *,
    storage_version: str = store.DEFAULT_STORAGE_VERSION, copy_below: int | None = None,
) -> Path | None:
    """Bring the standby up to date from the writer `con` and publish it; None when Windows refused.

    `con`: a cursor of the writer connection that nothing else uses meanwhile (its `USE` changes);
    the database must have just been CHECKPOINTed (a whole copy may be needed). `views_sql`: the
    CREATE OR REPLACE VIEW statements the writer ran, run again inside the standby. `storage_version`:
    the DuckDB storage version the snapshot is kept in (module docstring). `copy_below`: the size in
    bytes below which the database is copied whole (default: `copy_below_bytes()`).
    """
    con.execute(f"USE {store.CATALOG}")
    target = snapshot_path(out_dir)
    standby_dir = out_dir / STANDBY_DIR
    for stale in [*target.parent.glob(f".{target.name}.*.tmp"), *standby_dir.glob(".*.tmp"),
                  *standby_dir.glob(".*.tmp.wal")]:
        stale.unlink(missing_ok=True)  # left by a killed publish (one at a time: the writer's lock)
    standby = _standby_to_write(target, standby_paths(out_dir))
    wanted = store.storage_format_of(storage_version)
    database = out_dir / store.DATABASE_FILE
    below = copy_below_bytes() if copy_below is None else copy_below
    size = database.stat().st_size
    if size < below and store.storage_format(con, store.CATALOG) == wanted:  # a byte copy, not a conversion
        why: str | None = f"the database ({size / 2**20:.0f} MB) is smaller than {below / 2**20:.0f} MB"
    else:
        why = _update_standby(con, standby, views_sql, wanted)
    if why is not None:
        logger.info("BI snapshot: copying the whole database into %s because %s", standby, why)
        _wal(standby).unlink(missing_ok=True)  # would be replayed into the new copy otherwise
        if store.storage_format(con, store.CATALOG) == wanted:
            publish_snapshot(database, standby)
        else:
            _copy_converted(con, standby, storage_version)
    crash_point("snapshot-updated")
    return _link(standby, target)


def copy_below_bytes() -> int:
    """`COPY_BELOW_BYTES`, or the bytes `PIPER_ETL_SNAPSHOT_COPY_BELOW` names (a publish never fails over it)."""
    given = os.environ.get(COPY_BELOW_ENV, "").strip()
    if not given:
        return COPY_BELOW_BYTES
    try:
        return int(given)
    except ValueError:
        logger.warning("%s must be a number of bytes, not %r: using %d", COPY_BELOW_ENV, given, COPY_BELOW_BYTES)
        return COPY_BELOW_BYTES


def publish_snapshot(database: Path, target: Path) -> Path | None:
    """Copy `database` to `target` atomically; returns `target`, or None when Windows refused the rename.

    The caller must hold the database open (its lock keeps other writers out) and have just run a
    CHECKPOINT, so that the file alone holds every committed row.
    """
    wal = _wal(database)
    if wal.exists() and wal.stat().st_size > 0:
        raise SnapshotError(f"{database} has a write-ahead log ({wal.name}): run CHECKPOINT before publishing")
    for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by a killed publish (one at a time)
        stale.unlink(missing_ok=True)
    with open(database, "rb") as source:
        try:
            return files.write_atomically(target, lambda sink: shutil.copyfileobj(source, sink, _COPY_BUFFER))
        except PermissionError:
            if os.name != "nt":
                raise
            logger.warning("%s is held open by a reader that Windows will not let go of; not replaced", target)
            return None


def _copy_converted(con: duckdb.DuckDBPyConnection, standby: Path, storage_version: str) -> None:
    """Replace `standby` atomically by a copy of the database written in the format of `storage_version`."""
    logger.info("BI snapshot: the database is in DuckDB storage format %s; writing %s in that of %s instead of "
                "copying its bytes", store.storage_format(con, store.CATALOG), standby.name, storage_version)
    tmp = files.temporary_name(standby)
    literal = str(tmp).replace("'", "''")
    standby.parent.mkdir(parents=True, exist_ok=True)
    try:
        con.execute(f"ATTACH '{literal}' AS {CONVERTED_CATALOG} ({store.attach_options(tmp, storage_version)})")
        try:
            con.execute(f"COPY FROM DATABASE {store.CATALOG} TO {CONVERTED_CATALOG}")
        finally:
            con.execute(f"DETACH {CONVERTED_CATALOG}")  # checkpoints: the file alone holds every row
        with open(tmp, "rb+") as copied:
            os.fsync(copied.fileno())
        try:
            os.replace(tmp, standby)
        except PermissionError:  # as `publish_snapshot`: Windows keeps a file a reader holds
            if os.name != "nt":
                raise
            logger.warning("%s is held open by a reader that Windows will not let go of; not replaced", standby)
            return
        files.fsync_folder(standby.parent)
    finally:
        tmp.unlink(missing_ok=True)
        _wal(tmp).unlink(missing_ok=True)


def _standby_to_write(target: Path, standbys: list[Path]) -> Path:
    """The standby `target` is not a link to; of two such (an older layout of the folder), one that exists."""
    published = _identity(target)
    free = [path for path in standbys if published is None or _identity(path) != published]
    return next((path for path in free if path.exists()), free[0])


def _update_standby(con: duckdb.DuckDBPyConnection, standby: Path, views_sql: str, storage: str) -> str | None:
    """Bring `standby` up to date with the database's committed loads; None when done, else why not.

    `storage`: the storage format (`store.storage_format`) the standby must be in.
    """
    if not standby.exists():
        return "there is no standby copy yet"
    if _held_in_this_process(standby):
        return "a reader in this process has it open"
    literal = str(standby).replace("'", "''")
    try:
        con.execute(f"ATTACH '{literal}' AS {STANDBY_CATALOG} (ROW_GROUP_SIZE {store.ROW_GROUP_SIZE})")
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
            return "a reader still has it open"
        return f"it cannot be opened ({exc})"
    try:
        found = store.storage_format(con, STANDBY_CATALOG)
        why = f"it is in DuckDB storage format {found}, not {storage}" if found != storage else None
        why = why or _catch_up(con, views_sql)
    except duckdb.Error as exc:  # a whole copy is always right; the cause goes to the log line
        why = f"updating it failed ({exc})"
    finally:
        con.execute(f"USE {store.CATALOG}")
        con.execute(f"DETACH {STANDBY_CATALOG}")
    wal = _wal(standby)
    if why is None and wal.exists() and wal.stat().st_size > 0:
        return f"its write-ahead log {wal.name} was left after the checkpoint"
    return why


def _catch_up(con: duckdb.DuckDBPyConnection, views_sql: str) -> str | None:
    """Add to the attached standby the loads it lacks (module docstring); None when done, else why not."""
    if _layout(con, STANDBY_CATALOG) != _layout(con, store.CATALOG):
        return "its table layout differs from the database's"
    db, bi = store.CATALOG, STANDBY_CATALOG
    merged = [row[0] for row in con.execute(f"SELECT load_id FROM {db}.loads ORDER BY rowid").fetchall()]
    held = {row[0] for row in con.execute(f"SELECT load_id FROM {bi}.loads").fetchall()}
    if held - set(merged):
        return "it holds loads the database does not"
    missing = [load for load in merged if load not in held]
    if set(merged[len(merged) - len(missing):]) != set(missing):
        return "the loads it lacks are not the last ones the database merged"
    con.execute("CREATE OR REPLACE TEMP TABLE snapshot_missing AS SELECT unnest(?::VARCHAR[]) AS load_id", [missing])
    try:
        if _rows_of_loads(con):
            return "it holds rows of loads its loads table does not name"
        _insert_missing(con, views_sql, {table: _tail_start(con, table) for table in _LOAD_COLUMN})
    finally:
        con.execute("DROP TABLE IF EXISTS temp.snapshot_missing")
    con.execute(f"CHECKPOINT {STANDBY_CATALOG}")
    return None


def _insert_missing(con: duckdb.DuckDBPyConnection, views_sql: str, starts: dict[str, int]) -> None:
    """One transaction: the stale versions out of the standby, the missing loads' rows in (module docstring).

    `starts`: per table, a rowid of the database's table from which on it holds every row of the
    missing loads (`_tail_start`): each read of those rows is bounded by it.
    """
    db, bi = store.CATALOG, STANDBY_CATALOG
    con.execute(f"""CREATE OR REPLACE TEMP TABLE snapshot_touched AS
        SELECT DISTINCT run_id, session_id FROM {db}.fetch_log WHERE {_of_missing("fetch_log")}""",
                [starts["fetch_log"]])
    # The standby's run versions that the missing loads made no longer current (every row of a data
    # table belongs to the version of its runs row: same run_id, session_id and _load_id): those of the
    # standby's versions sharing a run or session with them that the database's `runs` no longer holds.
    con.execute(f"""CREATE OR REPLACE TEMP TABLE snapshot_stale AS
        SELECT run_id, session_id, _load_id FROM {bi}.runs
        WHERE run_id IN (SELECT run_id FROM temp.snapshot_touched)
           OR session_id IN (SELECT session_id FROM temp.snapshot_touched)""")
    con.execute(f"""DELETE FROM temp.snapshot_stale s USING {db}.runs r
        WHERE r.run_id = s.run_id AND r.session_id = s.session_id AND r._load_id = s._load_id""")
    stale_loads = [row[0] for row in con.execute("SELECT DISTINCT _load_id FROM temp.snapshot_stale").fetchall()]
    con.execute("BEGIN TRANSACTION")
    try:
        for table in DATA_TABLES:
            t = quote_ident(table)
            for load in stale_loads:  # one `_load_id = ?` each: DuckDB skips other days' row groups (docs/bi.md)
                con.execute(f"DELETE FROM {bi}.{t} USING temp.snapshot_stale s WHERE {t}._load_id = $load "
                            f"AND s._load_id = $load AND {t}.run_id = s.run_id AND {t}.session_id = s.session_id",
                            {"load": load})
            _insert_tail(con, table, starts[table])  # the new loads' rows, all current
        for table, key in DIMENSION_KEYS.items():
            t, k = quote_ident(table), quote_ident(key)
            # a key's current rows are those of one load: a new one replaces them all
            con.execute(f"DELETE FROM {bi}.{t} WHERE {k} IN (SELECT {k} FROM {db}.{t} WHERE {_of_missing(table)})",
                        [starts[table]])
            _insert_tail(con, table, starts[table])
        for table in (*HISTORY_TABLES, "loads"):
            _insert_tail(con, table, starts[table])
        con.execute(f"DELETE FROM {bi}.token_prices")
        con.execute(f"INSERT INTO {bi}.token_prices BY NAME SELECT * FROM {db}.token_prices")
        if _views(con, bi) != _views(con, db):  # unchanged views are not rewritten (nor checkpointed)
            con.execute(f"USE {STANDBY_CATALOG}")  # the views' unqualified names bind to the standby's tables
            con.execute(views_sql)
        crash_point("snapshot-updating")
        con.execute("COMMIT")
    except BaseException:
        with suppress(duckdb.Error):  # a COMMIT that failed has ended the transaction already
            con.execute("ROLLBACK")
        raise
    finally:
        con.execute("DROP TABLE IF EXISTS temp.snapshot_stale")
        con.execute("DROP TABLE IF EXISTS temp.snapshot_touched")


_LOAD_COLUMN = {**{table: "_load_id" for table in (*DATA_TABLES, *DIMENSION_KEYS)},
                **{table: "load_id" for table in (*HISTORY_TABLES, "loads")}}
"""Every table a load adds rows to, and the column naming the load of each row."""
TAIL_STEP = 4096
"""Rows the first look back from a table's end covers (`_tail_start`); each further look covers twice as many."""
GUARD_ROWS = 122_880
"""Rows at the end of each of the standby's tables that `_rows_of_loads` reads (one DuckDB row group)."""


def _of_missing(table: str) -> str:
    """The condition, with one parameter (the table's tail start), for a row of a missing load."""
    return f"rowid >= ? AND {_LOAD_COLUMN[table]} IN (SELECT load_id FROM temp.snapshot_missing)"


def _tail_start(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """A rowid of the database's `table` from which on it holds every row of the loads in `snapshot_missing`.

    Those loads are the last ones merged (`_catch_up` checked): every row they added was appended
    after every row of the loads before them, and DuckDB keeps a table's rows in the order they were
    appended (a checkpoint that merges row groups keeps it too; rowids only shift down). So the rows
    of the missing loads are the table's last rows, and once a look back from the end finds a row of
    another load, no missing load's row lies before where that look began. The looks double, so the
    rows read are at most four times those of the missing loads, however long the table: a condition
    on the rowid is one DuckDB skips row groups by, unlike `_load_id = ?` whose row-group statistics
    keep only the first 8 bytes of a string (the day of a load id).
    """
    other = (f"SELECT count(*) FROM {store.CATALOG}.{quote_ident(table)} WHERE rowid >= ? "
             f"AND {_LOAD_COLUMN[table]} NOT IN (SELECT load_id FROM temp.snapshot_missing)")
    start, step = _end(con, store.CATALOG, table), TAIL_STEP
    while start > 0:
        start = max(0, start - step)
        if _count(con, other, [start]):
            break
        step *= 2
    return start


def _insert_tail(con: duckdb.DuckDBPyConnection, table: str, start: int) -> None:
    """Insert into the standby's `table` the database's rows of the missing loads, read from rowid `start` on."""
    t = quote_ident(table)
    con.execute(f"INSERT INTO {STANDBY_CATALOG}.{t} BY NAME SELECT * FROM {store.CATALOG}.{t} "
                f"WHERE {_of_missing(table)}", [start])


def _rows_of_loads(con: duckdb.DuckDBPyConnection) -> int:
    """How many rows of the missing loads the last `GUARD_ROWS` of the standby's tables hold (0 by construction).

    Every standby got each load's rows in the transaction that added the load's `loads` row, so it
    holds no row of a load its `loads` lacks, and the missing loads' rows are inserted without a
    DELETE first. This looks for the damage a broken file would show where rows are added, at the
    end of each table, without reading whole tables.
    """
    return sum(_count(con, f"SELECT count(*) FROM {STANDBY_CATALOG}.{quote_ident(table)} WHERE {_of_missing(table)}",
                      [max(0, _end(con, STANDBY_CATALOG, table) - GUARD_ROWS)])
               for table in _LOAD_COLUMN)


def _end(con: duckdb.DuckDBPyConnection, catalog: str, table: str) -> int:
    """One past the greatest rowid of `table` (deleted rows leave gaps until a checkpoint merges row groups)."""
    return _count(con, f"SELECT coalesce(max(rowid) + 1, 0) FROM {catalog}.{quote_ident(table)}")


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> int:
    row = con.execute(sql, list(params)).fetchone()
    return int(row[0]) if row else 0


def _views(con: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[object, ...]]:
    return con.execute("SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? AND NOT internal "
                       "ORDER BY 1", [catalog]).fetchall()


def _layout(con: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[object, ...]]:
    """Every table's columns, in order, with their types."""
    return con.execute(
        "SELECT c.table_name, c.column_index, c.column_name, c.data_type, c.is_nullable "
        "FROM duckdb_columns() c JOIN duckdb_tables() t USING (table_oid) "
        "WHERE c.database_name = ? AND c.schema_name = 'main' ORDER BY 1, 2",
        [catalog],
    ).fetchall()


def _link(standby: Path, target: Path) -> Path | None:
    """Make `target` a hard link to `standby`, atomically (a copy where the file system has no hard links)."""
    tmp = files.temporary_name(target)
    try:
        os.link(standby, tmp)
    except OSError as exc:
        logger.info("BI snapshot: copying %s to %s because it cannot be hard-linked (%s)", standby, target, exc)
        return publish_snapshot(standby, target)
    try:
        crash_point("snapshot-linked")
        os.replace(tmp, target)
    except PermissionError:
        if os.name != "nt":
            raise
        logger.warning("%s is held open by a reader that Windows will not let go of; not replaced", target)
        return None
    finally:
        tmp.unlink(missing_ok=True)
    files.fsync_folder(target.parent)
    return target


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


def _held_in_this_process(path: Path) -> bool:
    """Whether this process has `path` open (Linux: /proc/self/fd; elsewhere unknown, so False)."""
    if not sys.platform.startswith("linux"):
        return False
    wanted = _identity(path)
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            stat = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) == wanted:
            return True
    return False


def _wal(database: Path) -> Path:
    return database.with_name(database.name + ".wal")
