"""What a load publishes after its merge: prices, analytics views and the snapshot dashboards read."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from connector.errors import PiperConfigError
from flows.settings import LoadSettings
from warehouse import analytics, landing, pricing, snapshot, store

logger = logging.getLogger(__name__)


def publish_after_merge(settings: LoadSettings) -> None:
    """Store the prices, (re)create the analytics views and publish `piper-bi.duckdb`; the step after a merge.

    Parquet outputs get the prices as `parquet/token_prices/token_prices.parquet` and the views at the end
    of `current_state.sql`. The DuckDB file gets `token_prices` and the views, then is copied to the
    snapshot while this step still holds its lock, so the copy is one whole, committed state.
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
        database = settings.out_dir / store.DATABASE_FILE
        con = store.connect(database, lock_timeout=settings.lock_timeout)
        try:
            analytics.install(con, prices, now)
            snapshot.publish_snapshot(database, snapshot.snapshot_path(settings.out_dir))
        finally:
            con.close()
