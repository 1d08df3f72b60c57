"""The analytics views (`analytics.sql`): installed in `OUT/piper.duckdb` and written into `current_state.sql`.

The views are defined once, as SQL over the tables `runs`, `turns`, `criteria_results`, `token_prices`
and the dimensions `sessions` and `scenario_criteria`, so the same text works wherever those names
resolve: inside the DuckDB file, over the Parquet current-state views, or in the in-memory database of
`piper-etl sql` and `report`.
"""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files

import duckdb

from warehouse import pricing

VIEWS = {
    "scenario_summary": "per scenario: runs by status, run and criteria pass rates, durations, tokens, cost",
    "criteria_summary": "per criterion: evaluations, passes, fails, other verdicts, tokens, latest failing critique",
    "agent_summary": "per agent and scenario: runs, run and criteria pass rates, tokens, cost",
    "daily_summary": "per UTC day and scenario: runs, pass rates, tokens, cost",
    "run_costs": "per run: judge tokens by kind and estimated cost",
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
    forget the prices an earlier load stored). Ends with a CHECKPOINT, so that while the caller keeps
    the connection (and with it the file lock) open, the file on disk is whole and can be copied.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(pricing.CREATE_TABLE_SQL)
        if prices is not None:
            pricing.replace_prices(con, prices, priced_at)
        con.execute(analytics_sql())
        if more_sql:
            con.execute(more_sql)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT")
