"""DuckDB table definitions derived from the Arrow schemas, so the two can never disagree."""

from __future__ import annotations

import pyarrow as pa

from schemas.tables import LANDED_TABLES, LOADS

ALL_TABLES: dict[str, pa.Schema] = {**LANDED_TABLES, "loads": LOADS}
_KNOWN_NAMES = frozenset({field.name for schema in ALL_TABLES.values() for field in schema} | set(ALL_TABLES))
"""Every table and column name, built once: `quote_ident` runs for each column of every SQL text we generate."""


def quote_ident(name: str) -> str:
    """Quote an identifier; only names from our own schemas reach here, checked against them."""
    if name not in _KNOWN_NAMES:
        raise ValueError(f"{name!r} is not a known table or column")
    return '"' + name.replace('"', '""') + '"'


def duckdb_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "VARCHAR"
    if pa.types.is_int32(arrow_type):
        return "INTEGER"
    if pa.types.is_int64(arrow_type):
        return "BIGINT"
    if pa.types.is_float64(arrow_type):
        return "DOUBLE"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
        return "TIMESTAMPTZ"
    if pa.types.is_list(arrow_type):
        return duckdb_type(arrow_type.value_type) + "[]"
    raise TypeError(f"no DuckDB type for {arrow_type}")


def create_table_sql(table: str) -> str:
    schema = ALL_TABLES[table]
    columns = [
        f"{quote_ident(f.name)} {duckdb_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in schema
    ]
    # No PRIMARY KEY constraints: DuckDB keeps their indexes in memory and cannot spill them, so a merge
    # of a 200 k-session load ran out of its memory limit (measured in docs/performance.md). Keys stay
    # unique because every merge deletes by run and by key before inserting one row per key, which
    # tests/test_load_idempotent.py checks after repeated, overlapping and duplicated loads.
    return f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} (\n    " + ",\n    ".join(columns) + "\n)"


def empty_select_sql(table: str) -> str:
    """A typed SELECT returning no rows: stands in for a table that has no Parquet parts yet."""
    schema = ALL_TABLES[table]
    columns = ", ".join(f"NULL::{duckdb_type(f.type)} AS {quote_ident(f.name)}" for f in schema)
    return f"SELECT {columns} WHERE false"
