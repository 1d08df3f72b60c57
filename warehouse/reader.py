"""Open an output folder for reading: an in-memory DuckDB with the tables and analytics views.

What `piper-etl sql` and `piper-etl report` query. The data comes from `OUT/parquet` (reduced to the
current state by the same SQL as `current_state.sql`) or, for a `--format duckdb` output, from the
published snapshot `OUT/piper-bi.duckdb`. Neither blocks a running load: the load's own
`piper.duckdb` is never opened here.

The source is attached as the catalog `piper_source`; the default catalog then holds views (or, with
a filter, a table of the matching runs) named like the tables, so the analytics SQL runs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warehouse import analytics, pricing, snapshot, views
from warehouse.landing import PARQUET_DIR

SOURCE = "piper_source"
PASS_THROUGH = ("fetch_log", "loads", "rejected_payloads")


class NoOutputError(LookupError):
    """The folder holds nothing a reader can open (no Parquet files and no published snapshot)."""


@dataclass
class Analytics:
    """An open in-memory connection over one output folder."""

    con: duckdb.DuckDBPyConnection
    source: Path
    prices_from_setting: bool

    @property
    def reads_snapshot(self) -> bool:
        return self.source.suffix == ".duckdb"

    def source_line(self) -> str:
        """Which store the connection reads, in words a person can act on (`piper-etl sql` and `report`)."""
        if self.reads_snapshot:
            return f"reading the snapshot {self.source} (published by the last load that wrote DuckDB)"
        return f"reading {self.source} (current state of the Parquet files)"

    def close(self) -> None:
        self.con.close()


def find_source(out_dir: Path) -> Path:
    """`OUT/parquet` when it has landed files, else the snapshot; NoOutputError when neither exists."""
    parquet_root = out_dir / PARQUET_DIR
    if parquet_root.is_dir() and views.present_tables(parquet_root):
        return parquet_root
    published = snapshot.snapshot_path(out_dir)
    if published.is_file():
        return published
    raise NoOutputError(
        f"nothing to read in {out_dir}: no Parquet files under {parquet_root} and no {published.name}; "
        "run piper-etl load (or piper-etl demo) first"
    )


def open_analytics(
    out_dir: Path,
    *,
    prices: pricing.PriceList | None = None,
    since: datetime | None = None,
    scenario: str | None = None,
    prefer_snapshot: bool = False,
) -> Analytics:
    """Open `out_dir` with every table and analytics view, optionally restricted to some runs.

    `prices` replaces the stored prices for this connection only. `since` keeps runs started at or
    after that instant (runs not started yet are left out); `scenario` keeps runs of that scenario name.
    `prefer_snapshot` reads the published snapshot when there is one: right after a load that wrote
    DuckDB it holds the same current state as the Parquet files, already reduced, so it reads faster.
    """
    published = snapshot.snapshot_path(out_dir)
    source = published if prefer_snapshot and published.is_file() else find_source(out_dir)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # timestamps come back in UTC, as the report labels them
        has_prices = _attach(con, source)
        _define_tables(con, since, scenario)
        if prices is not None:
            pricing.replace_prices(con, prices, datetime.now(UTC))
        elif has_prices:
            con.execute(f"CREATE VIEW token_prices AS SELECT * FROM {SOURCE}.token_prices")
        else:
            con.execute(f"CREATE VIEW token_prices AS {analytics.EMPTY_TOKEN_PRICES}")
        con.execute(analytics.analytics_sql())
    except BaseException:
        con.close()
        raise
    return Analytics(con, source, prices is not None)


def _attach(con: duckdb.DuckDBPyConnection, source: Path) -> bool:
    """Attach the source as `piper_source`; True when it has a `token_prices` table or view."""
    if source.suffix == ".duckdb":
        con.execute(f"ATTACH ? AS {SOURCE} (READ_ONLY)", [str(source)])
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
            [SOURCE, pricing.TABLE],
        ).fetchone()
        return bool(found and found[0])  # a snapshot published before token_prices existed has none
    root = source.as_posix()
    con.execute(f"ATTACH ':memory:' AS {SOURCE}")
    con.execute(f"USE {SOURCE}")
    try:
        con.execute(views.current_state_sql(root, views.read_layout(source)))
        con.execute(analytics.token_prices_view_sql(root, pricing.prices_part(source).exists()))
    finally:
        con.execute("USE memory")
    return True


def _define_tables(con: duckdb.DuckDBPyConnection, since: datetime | None, scenario: str | None) -> None:
    conditions: list[str] = []
    params: list[object] = []
    if since is not None:
        conditions.append("started_at >= ?")
        params.append(since)
    if scenario is not None:
        conditions.append("scenario_name = ?")
        params.append(scenario)
    if conditions:
        con.execute(f"CREATE TABLE runs AS SELECT * FROM {SOURCE}.runs WHERE {' AND '.join(conditions)}", params)
        for table in ("turns", "criteria_results"):
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM {SOURCE}.{table} WHERE run_id IN (SELECT run_id FROM runs)"
            )
    else:
        for table in ("runs", "turns", "criteria_results"):
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM {SOURCE}.{table}")
    for table in PASS_THROUGH:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {SOURCE}.{table}")
