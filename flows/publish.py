"""What a load publishes after its merge: prices, analytics views and the snapshot dashboards read."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from connector.errors import PiperConfigError
from flows.settings import LoadSettings
from warehouse import analytics, landing, pricing, reader, snapshot, store
from warehouse.report_data import collect
from warehouse.report_markdown import summary_markdown

logger = logging.getLogger(__name__)


def publish_after_merge(
    settings: LoadSettings, con: duckdb.DuckDBPyConnection | None, *, summarize: bool = False
) -> str | None:
    """Store the prices, (re)create the analytics views and publish `piper-bi.duckdb`; the step after a merge.

    Parquet outputs get the prices as `parquet/token_prices/token_prices.parquet` and the views at the end
    of `current_state.sql` (written by then). The DuckDB file gets `token_prices` and the views through
    `con`, the load's open writer connection (required when the load writes DuckDB), then is copied to
    the snapshot while that connection still holds the lock, so the copy is one whole, committed state.

    `summarize` (a load that writes DuckDB): returns the verdict summary markdown of `analytics_markdown`,
    read from `con` while the snapshot is being copied (the copy waits on the disk, the read on DuckDB),
    so the summary adds no time until it takes longer than the copy. None otherwise.
    """
    try:
        prices = settings.price_list()
    except PiperConfigError as exc:  # the file changed since the load began: the merge stands, prices wait
        logger.warning("judge prices not updated: %s", exc)
        prices = None
    now = datetime.now(UTC)
    if settings.writes_parquet:
        parquet_root = settings.out_dir / landing.PARQUET_DIR
        if prices is not None:
            pricing.write_prices_parquet(parquet_root, prices, now)
        analytics.append_to_current_state_sql(settings.out_dir, parquet_root)
    if settings.writes_duckdb:
        if con is None:
            raise ValueError("a load that writes DuckDB publishes through its open connection")
        analytics.install(con, prices, now)
        database, target = settings.out_dir / store.DATABASE_FILE, snapshot.snapshot_path(settings.out_dir)
        if not summarize:
            snapshot.publish_snapshot(database, target)
            return None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper-snapshot") as pool:
            copying = pool.submit(snapshot.publish_snapshot, database, target)
            verdicts = _verdicts_from_writer(con, database)
            copying.result()
        return verdicts
    return None


def _verdicts_from_writer(con: duckdb.DuckDBPyConnection, database: Path) -> str:
    """`analytics_markdown` of the committed state, read through a cursor of the writer connection."""
    cursor = con.cursor()
    try:
        cursor.execute("SET TimeZone = 'UTC'")  # as `reader.open_analytics`: the cursor's setting only
        cursor.execute(f"USE {store.CATALOG}")
        return summary_markdown(collect(reader.Analytics(cursor, database, prices_from_setting=False)))
    except duckdb.Error as exc:
        return _summary_unavailable(exc)
    finally:
        cursor.close()


def analytics_markdown(out_dir: Path, *, prefer_snapshot: bool = False) -> str:
    """The verdict and cost summary of an output folder as markdown ('' when there is nothing to read yet).

    `prefer_snapshot`: read `piper-bi.duckdb` (fresh after a load that wrote DuckDB) rather than the
    Parquet files, whose current-state views deduplicate every load's parts on each query.
    """
    try:
        opened = reader.open_analytics(out_dir, prefer_snapshot=prefer_snapshot)
    except reader.NoOutputError:
        return ""
    except duckdb.Error as exc:
        return _summary_unavailable(exc)
    try:
        return summary_markdown(collect(opened))
    except duckdb.Error as exc:
        return _summary_unavailable(exc)
    finally:
        opened.close()


def _summary_unavailable(exc: duckdb.Error) -> str:
    """What stands in for the verdict tables when they cannot be read: a summary never fails its load."""
    return f"\n(verdict summary unavailable: {exc})\n"
