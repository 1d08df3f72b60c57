"""The current state over the Parquet landing files alone, as SQL views.

Only committed loads count: a load's parts are read once its `loads` row has landed, so a load still
running, or one that died, is invisible. A run's current rows are those of its current *version*, by
the rule `warehouse/merge.py` states and the DuckDB merge applies: exactly what `piper.duckdb` holds.
`fetch_log`, `rejected_payloads` and `loads` keep every row of every committed load. The same SQL is
written to `OUT/current_state.sql` for people who use Parquet only:

    cd OUT && duckdb -c ".read current_state.sql" -c "SELECT status, count(*) FROM runs GROUP BY 1"
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from schemas.tables import DIMENSION_KEYS
from warehouse.ddl import ALL_TABLES, empty_select_sql, quote_ident

CURRENT_STATE_FILE = "current_state.sql"

CURRENT_VERSIONS_SQL = """SELECT f.run_id, f.session_id, f.load_id FROM fetch_log f JOIN loads l USING (load_id)
WHERE f.outcome = 'loaded'
QUALIFY row_number() OVER (PARTITION BY f.run_id
                           ORDER BY coalesce(l.load_seq, 0) DESC, f.load_id DESC, f.session_id DESC) = 1
    AND row_number() OVER (PARTITION BY f.session_id ORDER BY coalesce(l.load_seq, 0) DESC, f.load_id DESC) = 1"""
"""One row per current run version: which load's copy, from which session, each current run is."""

KEY_COLLISIONS_SQL = """CREATE OR REPLACE VIEW key_collisions AS
SELECT 'turns' AS table_name, turn_result_id AS id, count(DISTINCT run_id) AS runs,
       list(DISTINCT run_id ORDER BY run_id) AS run_ids
FROM turns GROUP BY turn_result_id HAVING count(DISTINCT run_id) > 1
UNION ALL
SELECT 'criteria_results', criteria_result_id, count(DISTINCT run_id), list(DISTINCT run_id ORDER BY run_id)
FROM criteria_results GROUP BY criteria_result_id HAVING count(DISTINCT run_id) > 1;
"""
"""Turn and criteria result ids that the API reported under more than one current run (each run keeps its own)."""


def _source(root: str, table: str, present: bool) -> str:
    """The table's landed parts, with every column of the current schema (older parts lack some)."""
    if not present:
        return f"({empty_select_sql(table)})"
    pattern = f"{root}/{table}/*.parquet".replace("'", "''")
    landed = f"SELECT * FROM read_parquet('{pattern}', union_by_name = true)"
    return f"({empty_select_sql(table)} UNION ALL BY NAME {landed})"


def current_state_sql(root: str, present: set[str]) -> str:
    """SQL creating the current-state views over the parts under `root` (tables in `present` have parts)."""
    src = {table: _source(root, table, table in present) for table in ALL_TABLES}
    statements = [
        f"CREATE OR REPLACE VIEW loads AS SELECT * FROM {src['loads']}",
        f"CREATE OR REPLACE VIEW fetch_log AS SELECT * FROM {src['fetch_log']}\n"
        "WHERE load_id IN (SELECT load_id FROM loads)\n"
        "QUALIFY row_number() OVER (PARTITION BY load_id, session_id ORDER BY fetched_at DESC) = 1",
        f"CREATE OR REPLACE VIEW rejected_payloads AS SELECT * FROM {src['rejected_payloads']}\n"
        "WHERE load_id IN (SELECT load_id FROM loads)",
        f"CREATE OR REPLACE VIEW sync_state AS SELECT * FROM {src['sync_state']}\n"
        "WHERE load_id IN (SELECT load_id FROM loads)",
        f"CREATE OR REPLACE VIEW current_versions AS {CURRENT_VERSIONS_SQL}",
    ]
    for table, key in DIMENSION_KEYS.items():  # the rows of the newest committed load that landed each key
        statements.append(
            f"CREATE OR REPLACE VIEW {quote_ident(table)} AS SELECT landed.* FROM {src[table]} AS landed\n"
            "JOIN loads l ON l.load_id = landed._load_id\n"
            f"QUALIFY rank() OVER (PARTITION BY landed.{quote_ident(key)}\n"
            "                      ORDER BY coalesce(l.load_seq, 0) DESC, landed._load_id DESC) = 1"
        )
    for table in ("runs", "turns", "criteria_results"):
        statements.append(
            f"CREATE OR REPLACE VIEW {quote_ident(table)} AS SELECT landed.* FROM {src[table]} AS landed\n"
            "SEMI JOIN current_versions AS v ON landed.run_id = v.run_id AND landed.session_id = v.session_id\n"
            "    AND landed._load_id = v.load_id"
        )
    return ";\n\n".join(statements) + ";\n\n" + KEY_COLLISIONS_SQL


def present_tables(parquet_root: Path) -> set[str]:
    return {table for table in ALL_TABLES if any((parquet_root / table).glob("*.parquet"))}


def relative_root(out_dir: Path, parquet_root: Path) -> str:
    """`parquet_root` as `current_state.sql` names it: relative to OUT when inside, so the folder can move."""
    inside = parquet_root.is_relative_to(out_dir)
    return parquet_root.relative_to(out_dir).as_posix() if inside else parquet_root.as_posix()


def open_current_state(parquet_root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose views show the current state of the Parquet files."""
    con = duckdb.connect()
    con.execute(current_state_sql(parquet_root.as_posix(), present_tables(parquet_root)))
    return con
