"""What a committed load publishes: prices, `current_state.sql`, the views, and the snapshot dashboards read."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import duckdb

from schemas.tables import DIMENSION_KEYS
from warehouse import analytics, compacted, files, leases, objstore, pricing, reader, snapshot, store, views
from warehouse.ddl import quote_ident
from warehouse.report_data import collect
from warehouse.report_markdown import summary_markdown

CURRENT_STATE_HEADER = (
    "-- Current state of the piper-etl Parquet landing files, as DuckDB views.\n"
    "-- Run from this folder: duckdb -c \".read current_state.sql\" -c \"SELECT * FROM runs LIMIT 5\"\n"
    "-- Regenerated after every load that writes Parquet and every compaction. It names its files one by one:\n"
    "-- files a later compaction replaces stay for the grace period (docs/bi.md); after that, read it again.\n\n"
)


def write_current_state_file(out_dir: Path, parquet_root: objstore.Root) -> objstore.Root:
    """Write `OUT/current_state.sql` in one pass: the current-state views, the prices, the analytics views.

    On an object store it is written beside `parquet/` there, naming the files by their URLs.
    """
    with leases.folder_lock(out_dir):  # two loads at once: the later file knows every table either saw
        return write_current_state_unlocked(out_dir, parquet_root, views.read_layout(parquet_root))


def write_current_state_unlocked(out_dir: Path, parquet_root: objstore.Root, layout: views.Layout,
                                 manifest: compacted.Manifest | None = None) -> objstore.Root:
    """`write_current_state_file` over `layout`, for a caller that holds `leases.folder_lock` (a compaction,
    which passes the `manifest` it is about to commit). The views use `views.read_facts` on a local landing
    only: the facts read every file's footer, which on an object store is a request per file."""
    root = views.relative_root(out_dir, parquet_root)
    text = (
        CURRENT_STATE_HEADER
        + views.current_state_sql(
            root, layout,
            views.read_facts(parquet_root, layout, manifest) if isinstance(parquet_root, Path) else None)
        + f"\n{analytics.MARKER} (docs/analytics.md): token prices, then the views over the tables above.\n"
        + analytics.token_prices_view_sql(root, pricing.prices_part(parquet_root).exists())
        + "\n"
        + analytics.analytics_sql()
    )
    if isinstance(parquet_root, objstore.ObjectPath):
        return objstore.write_text(parquet_root.parent / views.CURRENT_STATE_FILE, text)
    return files.write_text_atomically(out_dir / views.CURRENT_STATE_FILE, text)


def publish_parquet(
    out_dir: Path, parquet_root: objstore.Root, prices: pricing.PriceList | None, now: datetime
) -> None:
    """The prices file (when the load set prices) and `current_state.sql`."""
    if prices is not None:
        pricing.write_prices_parquet(parquet_root, prices, now)
    write_current_state_file(out_dir, parquet_root)


def publish_duckdb(
    con: duckdb.DuckDBPyConnection, out_dir: Path, prices: pricing.PriceList | None, now: datetime,
    *, summarize: bool, load_id: str | None = None, storage_version: str = store.DEFAULT_STORAGE_VERSION,
) -> str | None:
    """Store the prices and (re)create the views through the writer connection, then publish the snapshot.

    The snapshot is brought up to date while `con` still holds the database's lock, right after a
    CHECKPOINT, so it is one whole committed state (warehouse/snapshot.py). `summarize`: returns the
    verdict summary markdown, read through another cursor of `con` while the snapshot is published:
    of the rows of load `load_id` (`load_summary_markdown`), or of the whole state when None.
    `storage_version`: the DuckDB storage version the snapshot is written in.
    """
    more_sql = f"CREATE OR REPLACE VIEW current_versions AS {views.CURRENT_VERSIONS_SQL};\n" + views.KEY_COLLISIONS_SQL
    analytics.install(con, prices, now, more_sql=more_sql)  # then CHECKPOINT
    views_sql = analytics.analytics_sql() + "\n" + more_sql
    publishing = con.cursor()  # its own USE; made here, not in the thread: a connection is not thread-safe
    try:
        if not summarize:
            snapshot.publish(publishing, out_dir, views_sql, storage_version=storage_version)
            return None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper-snapshot") as pool:
            published = pool.submit(snapshot.publish, publishing, out_dir, views_sql, storage_version=storage_version)
            verdicts = _verdicts_from_writer(con, out_dir / store.DATABASE_FILE, load_id)
            published.result()
        return verdicts
    finally:
        publishing.close()


def _verdicts_from_writer(con: duckdb.DuckDBPyConnection, database: Path, load_id: str | None) -> str:
    """The verdict summary of the committed state (or of one load's rows), read through a cursor of the writer."""
    if load_id is not None:
        return load_summary_markdown(con, store.CATALOG, load_id, database)
    cursor = con.cursor()
    try:
        cursor.execute("SET TimeZone = 'UTC'")  # as `reader.open_analytics`: the cursor's setting only
        cursor.execute(f"USE {store.CATALOG}")
        return summary_markdown(collect(reader.Analytics(cursor, database, prices_from_setting=False)))
    except duckdb.Error as exc:
        return summary_unavailable(exc)
    finally:
        cursor.close()


LOAD_SUMMARY_CATALOG = "piper_load_summary"
LOAD_SCOPE = "the runs of this load"
_LOAD_ROWS = {
    "runs": "_load_id = $load_id", "turns": "_load_id = $load_id", "criteria_results": "_load_id = $load_id",
    "loads": "load_id = $load_id",
    # every dimension (sessions, scenarios, ...), by the key the load's runs carry
    **{table: f"{quote_ident(key)} IN (SELECT {quote_ident(key)} FROM {LOAD_SUMMARY_CATALOG}.runs)"
       for table, key in DIMENSION_KEYS.items()},
    "token_prices": "true",
}
"""What the verdict summary of one load reads of each table the analytics views read."""


def load_summary_markdown(con: duckdb.DuckDBPyConnection, catalog: str, load_id: str, source: Path, *,
                          own_cursor: bool = True) -> str:
    """The verdict summary of one load's current rows (its runs, their turns and criteria results) as markdown.

    `catalog` of `con` holds the current state (the database, or the Parquet current-state views with
    `token_prices`). Only the load's rows are read, by constants that skip other loads' row groups, and
    the dimension rows of its sessions and scenarios, into an in-memory catalog where the analytics
    views run: the summary costs what the load holds, not the warehouse. Read through a cursor of its own.
    It leaves out what changed in the week (that needs the history: `piper-etl report`, `check`).
    `own_cursor=False` reads through `con` itself: the Parquet current-state views read TEMP tables,
    which another cursor (another DuckDB connection) does not see.
    """
    cursor = con.cursor() if own_cursor else con
    try:
        cursor.execute("SET TimeZone = 'UTC'")
        cursor.execute(f"ATTACH ':memory:' AS {LOAD_SUMMARY_CATALOG}")
        try:
            for table, where in _LOAD_ROWS.items():
                t = table if table == pricing.TABLE else quote_ident(table)
                cursor.execute(f"CREATE TABLE {LOAD_SUMMARY_CATALOG}.{t} AS SELECT * FROM {catalog}.{t} "
                               f"WHERE {where}", {"load_id": load_id} if "$load_id" in where else {})
            cursor.execute(f"USE {LOAD_SUMMARY_CATALOG}")
            cursor.execute(analytics.analytics_sql())
            # What changed in the week is judged against the history, which this summary does not read:
            # `piper-etl report` and `piper-etl check` show it.
            data = collect(reader.Analytics(cursor, source, prices_from_setting=False), what_changed=False)
            return summary_markdown(data, scope=LOAD_SCOPE)
        finally:
            cursor.execute(f"USE {catalog}")
            cursor.execute(f"DETACH {LOAD_SUMMARY_CATALOG}")
    except duckdb.Error as exc:
        return summary_unavailable(exc)
    finally:
        if own_cursor:
            cursor.close()


def parquet_load_summary_markdown(parquet_root: objstore.Root, load_id: str) -> str:
    """`load_summary_markdown` over the committed Parquet files (a load that does not write DuckDB)."""
    try:
        con = views.open_current_state(parquet_root)
    except duckdb.Error as exc:
        return summary_unavailable(exc)
    try:
        priced = pricing.prices_part(parquet_root).exists()
        con.execute(analytics.token_prices_view_sql(parquet_root.as_posix(), priced))
        source = parquet_root if isinstance(parquet_root, Path) else Path(parquet_root.name)  # a label only
        return load_summary_markdown(con, "memory", load_id, source, own_cursor=False)
    except duckdb.Error as exc:
        return summary_unavailable(exc)
    finally:
        con.close()


def analytics_markdown(out_dir: Path, *, prefer_snapshot: bool = False) -> str:
    """The verdict and cost summary of an output folder as markdown ('' when there is nothing to read yet)."""
    try:
        opened = reader.open_analytics(out_dir, prefer_snapshot=prefer_snapshot)
    except reader.NoOutputError:
        return ""
    except duckdb.Error as exc:
        return summary_unavailable(exc)
    try:
        return summary_markdown(collect(opened))
    except duckdb.Error as exc:
        return summary_unavailable(exc)
    finally:
        opened.close()


def summary_unavailable(exc: duckdb.Error) -> str:
    """What stands in for the verdict tables when they cannot be read: a summary never fails its load."""
    return f"\n(verdict summary unavailable: {exc})\n"
