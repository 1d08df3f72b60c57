"""The analytics views (`analytics.sql`): installed in `OUT/piper.duckdb` and written into `current_state.sql`.

The views are defined once, as SQL over the tables `runs`, `turns`, `criteria_results`, `token_prices`
and the dimensions `sessions`, `scenario_criteria` and `agent_usage`, so the same text works wherever those names
resolve: inside the DuckDB file, over the Parquet current-state views, or in the in-memory database of
`piper-etl sql` and `report`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from importlib.resources import files

import duckdb

from warehouse import pricing

VIEWS = {
    "scenario_summary": "per scenario: runs by status, run and criteria pass rates, durations, tokens, cost",
    "criteria_summary": "per criterion: evaluations, passes, fails, other verdicts, tokens, latest failing critique",
    "agent_summary": "per agent and scenario: runs, run and criteria pass rates, tokens, cost",
    "daily_summary": "per UTC day and scenario: runs, pass rates, tokens, cost",
    "scenario_trend": "per ISO week (UTC, from Monday) and scenario: runs, pass rates, tokens, cost",
    "criteria_stability": "per criterion: verdict flips between PASS and FAIL over time, flip rate, flaky",
    "run_costs": "per run: judge tokens by kind and estimated cost, and the agent's own usage in its session",
    "failures": "one row per FAIL verdict with scenario, turn, question, critique and evidence, newest first",
}
"""The analytics views and what each holds, in the order docs/analytics.md describes them."""

MARKER = "-- piper-etl analytics section"
EMPTY_TOKEN_PRICES = (
    "SELECT NULL::VARCHAR AS judge_model, NULL::DOUBLE AS input_usd_per_million, "
    "NULL::DOUBLE AS output_usd_per_million, NULL::BOOLEAN AS selected, NULL::VARCHAR AS pricing_file, "
    "NULL::TIMESTAMPTZ AS priced_at WHERE false"
)


def analytics_sql() -> str:
    """The CREATE OR REPLACE VIEW statements of every analytics view."""
    return files("warehouse").joinpath("analytics.sql").read_text(encoding="utf-8")


def token_prices_view_sql(parquet_root: str, present: bool) -> str:
    """A `token_prices` view over the prices file next to the landing files (empty and typed if none)."""
    if not present:
        return f"CREATE OR REPLACE VIEW token_prices AS {EMPTY_TOKEN_PRICES};\n"
    pattern = f"{parquet_root}/{pricing.TABLE}/*.parquet".replace("'", "''")
    return f"CREATE OR REPLACE VIEW token_prices AS SELECT * FROM read_parquet('{pattern}');\n"


def install(
    con: duckdb.DuckDBPyConnection, prices: pricing.PriceList | None, priced_at: datetime, *, more_sql: str = ""
) -> None:
    """Create `token_prices` and the analytics views (and `more_sql`) in an open database, in one transaction.

    `prices` replaces the stored prices; None keeps them (a load without a pricing setting does not
    forget the prices an earlier load stored). The views are (re)created only when one of them is
    missing or was made by other SQL: each carries its description and a hash of the SQL that made it
    as its comment, so a load that changes no view rewrites no catalog entry. Ends with a CHECKPOINT,
    so that while the caller keeps the connection (and with it the file lock) open, the file on disk
    is whole and can be copied.
    """
    views_sql = analytics_sql() + (f"\n{more_sql}" if more_sql else "")
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(pricing.CREATE_TABLE_SQL)
        if prices is not None:
            pricing.replace_prices(con, prices, priced_at)
        comments = view_comments(views_sql, _table_columns(con))
        if not _installed(con, comments):
            con.execute(views_sql)
            for name, comment in comments.items():
                con.execute(f"COMMENT ON VIEW {name} IS '{comment.replace(chr(39), chr(39) * 2)}'")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT")


_VIEW_NAME = re.compile(r"CREATE\s+OR\s+REPLACE\s+VIEW\s+(\w+)", re.IGNORECASE)


def view_comments(views_sql: str, table_columns: str) -> dict[str, str]:
    """The comment of each view `views_sql` creates: its description and a hash of that SQL and the tables' columns."""
    stamp = f"piper-etl {hashlib.sha256((views_sql + table_columns).encode()).hexdigest()[:16]}"
    names = _VIEW_NAME.findall(views_sql)
    return {name: f"{VIEWS[name]} ({stamp})" if name in VIEWS else f"({stamp})" for name in names}


def _table_columns(con: duckdb.DuckDBPyConnection) -> str:
    """The tables' columns and types, in order: a view made before a table changed is made again."""
    rows = con.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM duckdb_columns() c "
        "JOIN duckdb_tables() t USING (table_oid) "
        "WHERE c.database_name = current_database() AND c.schema_name = current_schema() "
        "ORDER BY c.table_name, c.column_index"
    ).fetchall()
    return "\n".join(" ".join(map(str, row)) for row in rows)


def _installed(con: duckdb.DuckDBPyConnection, comments: dict[str, str]) -> bool:
    """Whether every view of `comments` exists with that comment, i.e. was made by the same SQL."""
    found = dict(con.execute(
        "SELECT view_name, comment FROM duckdb_views() "
        "WHERE database_name = current_database() AND schema_name = current_schema()"
    ).fetchall())
    return all(found.get(name) == comment for name, comment in comments.items())
