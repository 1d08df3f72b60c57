"""The current state over the Parquet landing files alone, as SQL views.

For each run, the current rows of `runs`, `turns` and `criteria_results` are those of the newest load
that wrote the run: exactly what the DuckDB merge keeps. `fetch_log`, `rejected_payloads` and `loads`
keep every row. The same SQL is written to `OUT/current_state.sql` for people who use Parquet only:

    cd OUT && duckdb -c ".read current_state.sql" -c "SELECT status, count(*) FROM runs GROUP BY 1"
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from warehouse.ddl import ALL_TABLES, empty_select_sql, quote_ident

CURRENT_STATE_FILE = "current_state.sql"
_NEWEST = "ORDER BY _loaded_at DESC, _load_id DESC, session_id DESC"
"""Newest load first; within a load (two sessions returning the same run) the greatest session id wins."""


def _source(root: str, table: str, present: bool) -> str:
    if not present:
        return f"({empty_select_sql(table)})"
    pattern = f"{root}/{table}/*.parquet".replace("'", "''")
    return f"read_parquet('{pattern}', union_by_name = true)"


def current_state_sql(root: str, present: set[str]) -> str:
    """SQL creating the current-state views over the parts under `root` (tables in `present` have parts)."""
    src = {table: _source(root, table, table in present) for table in ALL_TABLES}
    statements = [
        f"CREATE OR REPLACE VIEW runs AS SELECT * FROM {src['runs']}\n"
        f"QUALIFY row_number() OVER (PARTITION BY run_id {_NEWEST}) = 1",
    ]
    for table, key in (("turns", "turn_result_id"), ("criteria_results", "criteria_result_id")):
        statements.append(
            f"CREATE OR REPLACE VIEW {table} AS SELECT child.* FROM {src[table]} AS child\n"
            "JOIN runs AS current_run ON child.run_id = current_run.run_id AND child._load_id = current_run._load_id\n"
            "    AND child.session_id = current_run.session_id\n"
            f"QUALIFY row_number() OVER (PARTITION BY child.{key}\n"
            "    ORDER BY child._loaded_at DESC, child._load_id DESC, child.session_id DESC) = 1"
        )
    statements.append(
        f"CREATE OR REPLACE VIEW fetch_log AS SELECT * FROM {src['fetch_log']}\n"
        "QUALIFY row_number() OVER (PARTITION BY load_id, session_id ORDER BY fetched_at DESC) = 1"
    )
    for table in ("rejected_payloads", "loads"):
        statements.append(f"CREATE OR REPLACE VIEW {quote_ident(table)} AS SELECT * FROM {src[table]}")
    return ";\n\n".join(statements) + ";\n"


def present_tables(parquet_root: Path) -> set[str]:
    return {table for table in ALL_TABLES if any((parquet_root / table).glob("*.parquet"))}


def write_current_state_sql(out_dir: Path, parquet_root: Path) -> Path:
    """Write `OUT/current_state.sql`, with paths relative to OUT so the folder can be moved."""
    inside = parquet_root.is_relative_to(out_dir)
    relative = parquet_root.relative_to(out_dir).as_posix() if inside else parquet_root.as_posix()
    header = (
        "-- Current state of the piper-etl Parquet landing files, as DuckDB views.\n"
        "-- Run from this folder: duckdb -c \".read current_state.sql\" -c \"SELECT * FROM runs LIMIT 5\"\n"
        "-- Regenerated after every load.\n\n"
    )
    target = out_dir / CURRENT_STATE_FILE
    tmp = target.with_name(f".{CURRENT_STATE_FILE}.tmp")
    tmp.write_text(header + current_state_sql(relative, present_tables(parquet_root)), encoding="utf-8")
    tmp.replace(target)
    return target


def open_current_state(parquet_root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose views show the current state of the Parquet files."""
    con = duckdb.connect()
    con.execute(current_state_sql(parquet_root.as_posix(), present_tables(parquet_root)))
    return con
