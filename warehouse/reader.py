"""Open an output folder for reading: an in-memory DuckDB with the tables and analytics views.

What `piper-etl sql` and `piper-etl report` query. The data comes from `OUT/parquet` (reduced to the
current state by the same SQL as `current_state.sql`) or, for a `--format duckdb` output, from the
published snapshot `OUT/piper-bi.duckdb`. OUT may be an object-store URL (`s3://bucket/prefix`): its
Parquet files are then read through fsspec (`objstore.register`), as `views.open_current_state` reads them.
Neither blocks a running load: the load's own `piper.duckdb` is never opened here.

The source is attached as the catalog `piper_source`; the default catalog then holds views (or, with
a filter, a table of the matching runs) named like the tables, so the analytics SQL runs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warehouse import analytics, ddl, objstore, pricing, snapshot, views
from warehouse.landing import PARQUET_DIR
from warehouse.objstore import Root

SOURCE = "piper_source"
PASS_THROUGH = (
    "fetch_log", "loads", "rejected_payloads", "sessions", "scenarios", "scenario_criteria", "sync_state",
    "agent_usage",
)


class NoOutputError(LookupError):
    """The folder holds nothing a reader can open (no Parquet files and no published snapshot)."""


@dataclass
class Analytics:
    """An open in-memory connection over one output folder."""

    con: duckdb.DuckDBPyConnection
    source: Root
    prices_from_setting: bool

    @property
    def reads_snapshot(self) -> bool:
        return is_snapshot(self.source)

    def source_line(self) -> str:
        """Which store the connection reads, in words a person can act on (`piper-etl sql` and `report`)."""
        if self.reads_snapshot:
            return f"reading the snapshot {self.source} (published by the last load that wrote DuckDB)"
        return f"reading {self.source} (current state of the Parquet files)"

    def close(self) -> None:
        self.con.close()


def is_snapshot(source: Root) -> bool:
    """Whether a source `find_source` found is the published DuckDB snapshot (else a Parquet landing)."""
    return isinstance(source, Path) and source.suffix == ".duckdb"


def find_source(out_dir: Root) -> Root:
    """`OUT/parquet` when it has landed files, else the snapshot; NoOutputError when neither exists.

    On an object store only the Parquet files: the snapshot is a local file beside `--database`.
    """
    if isinstance(out_dir, objstore.ObjectPath):
        landed = out_dir / PARQUET_DIR
        try:
            objstore.check_reachable(landed)
        except objstore.ObjectStoreUnreachable as exc:
            raise NoOutputError(f"nothing to read in {out_dir}: {exc}") from None
        if views.present_tables(landed):
            return landed
        raise NoOutputError(f"nothing to read in {out_dir}: no committed Parquet loads under {landed}; "
                            f"run piper-etl load --out {out_dir} first")
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
    out_dir: Root,
    *,
    prices: pricing.PriceList | None = None,
    since: datetime | None = None,
    scenario: str | None = None,
    agent: str | None = None,
    tag: str | None = None,
    include_test: bool = True,
    prefer_snapshot: bool = False,
) -> Analytics:
    """Open `out_dir` with every table and analytics view, optionally restricted to some runs.

    `prices` replaces the stored prices for this connection only. `since` keeps runs started at or
    after that instant (runs not started yet are left out); `scenario` keeps runs of that scenario name;
    `agent` runs of the agent with that id or name; `tag` runs of the scenarios with that tag (as the
    `scenarios` table has them); `include_test=False` leaves out the runs of test sessions (`is_test`).
    The agent and is_test of a run are its own columns, else its session's (as the views take them).
    `prefer_snapshot` reads the published snapshot when there is one: right after a load that wrote
    DuckDB it holds the same current state as the Parquet files, already reduced, so it reads faster.
    """
    published = snapshot.snapshot_path(out_dir) if isinstance(out_dir, Path) else None
    source = published if prefer_snapshot and published and published.is_file() else find_source(out_dir)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # timestamps come back in UTC, as the report labels them
        has_prices = _attach(con, source)
        _define_tables(con, RunFilter(since, scenario, agent, tag, include_test))
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


def _attach(con: duckdb.DuckDBPyConnection, source: Root) -> bool:
    """Attach the source as `piper_source`; True when it has a `token_prices` table or view."""
    if is_snapshot(source):
        con.execute(f"ATTACH ? AS {SOURCE} (READ_ONLY)", [str(source)])
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
            [SOURCE, pricing.TABLE],
        ).fetchone()
        return bool(found and found[0])  # a snapshot published before token_prices existed has none
    root = source.as_posix()
    objstore.register(con, source)
    con.execute(f"ATTACH ':memory:' AS {SOURCE}")
    con.execute(f"USE {SOURCE}")
    try:
        con.execute(views.current_state_sql(root, views.read_layout(source)))
        con.execute(analytics.token_prices_view_sql(root, pricing.prices_part(source).exists()))
    finally:
        con.execute("USE memory")
    return True


@dataclass(frozen=True)
class RunFilter:
    """Which runs `piper-etl report` (and `open_analytics`) shows; the default keeps every run."""

    since: datetime | None = None
    scenario: str | None = None
    agent: str | None = None
    tag: str | None = None
    include_test: bool = True

    def where(self) -> tuple[list[str], list[object]]:
        """Conditions over the source's runs `r` and sessions `s` (see `_define_tables`), and their parameters."""
        conditions: list[str] = []
        params: list[object] = []
        if self.since is not None:
            conditions.append("r.started_at >= ?")
            params.append(self.since)
        if self.scenario is not None:
            conditions.append("r.scenario_name = ?")
            params.append(self.scenario)
        if self.agent is not None:
            conditions.append("? IN (coalesce(r.agent_id, s.agent_id), coalesce(r.agent_name, s.agent_name))")
            params.append(self.agent)
        if self.tag is not None:
            conditions.append("r.scenario_id IN (SELECT scenario_id FROM scenarios WHERE list_contains(tags, ?))")
            params.append(self.tag)
        if not self.include_test:
            conditions.append("NOT coalesce(r.is_test, s.is_test, false)")
        return conditions, params


def _define_tables(con: duckdb.DuckDBPyConnection, runs: RunFilter) -> None:
    """The tables of the source as views (or, with a filter, a table of the matching runs) in the default catalog.

    Each has every column of the current schema: a snapshot published by an older piper-etl may lack
    a table (the dimensions) or columns (runs' agent columns); they read as empty or NULL.
    """
    for table in PASS_THROUGH:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {_current_schema(con, table)}")
    conditions, params = runs.where()
    if conditions:
        con.execute(
            f"CREATE TABLE runs AS SELECT r.* FROM {_current_schema(con, 'runs')} AS r LEFT JOIN ("
            "SELECT session_id, any_value(agent_id) AS agent_id, any_value(agent_name) AS agent_name, "
            "bool_or(is_test) AS is_test FROM sessions GROUP BY session_id) AS s ON s.session_id = r.session_id "
            f"WHERE {' AND '.join(conditions)}",
            params,
        )
        for table in ("turns", "criteria_results"):
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM {_current_schema(con, table)} "
                        "WHERE run_id IN (SELECT run_id FROM runs)")
    else:
        for table in ("runs", "turns", "criteria_results"):
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM {_current_schema(con, table)}")


def _current_schema(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The source's `table` with every column the current schema has (typed NULL where it lacks one)."""
    found = {row[0] for row in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ?", [SOURCE, table]
    ).fetchall()}
    if not found:
        return f"({ddl.empty_select_sql(table)})"
    if set(ddl.ALL_TABLES[table].names) <= found:
        return f"{SOURCE}.{table}"
    return f"({ddl.empty_select_sql(table)} UNION ALL BY NAME SELECT * FROM {SOURCE}.{table})"
