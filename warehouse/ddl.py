"""DuckDB table definitions derived from the Arrow schemas, so the two can never disagree."""

from __future__ import annotations

import pyarrow as pa

from schemas.tables import LANDED_TABLES, LOADS, PRIMARY_KEYS

ALL_TABLES: dict[str, pa.Schema] = {**LANDED_TABLES, "loads": LOADS}
EXTRA_KEYS = {"fetch_log": ("load_id", "session_id"), "loads": ("load_id",)}


def quote_ident(name: str) -> str:
    """Quote an identifier; only names from our own schemas reach here, checked against them."""
    allowed = {field.name for schema in ALL_TABLES.values() for field in schema} | set(ALL_TABLES)
    if name not in allowed:
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
    raise TypeError(f"no DuckDB type for {arrow_type}")


def create_table_sql(table: str) -> str:
    schema = ALL_TABLES[table]
    columns = [
        f"{quote_ident(f.name)} {duckdb_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in schema
    ]
    key = (PRIMARY_KEYS[table],) if table in PRIMARY_KEYS else EXTRA_KEYS.get(table)
    if key:
        columns.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in key)})")
    return f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} (\n    " + ",\n    ".join(columns) + "\n)"


def empty_select_sql(table: str) -> str:
    """A typed SELECT returning no rows: stands in for a table that has no Parquet parts yet."""
    schema = ALL_TABLES[table]
    columns = ", ".join(f"NULL::{duckdb_type(f.type)} AS {quote_ident(f.name)}" for f in schema)
    return f"SELECT {columns} WHERE false"
