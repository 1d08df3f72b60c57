"""An in-memory DuckDB with the project's own tables (warehouse/ddl.py) and the analytics views installed.

For tests that hand-build table rows a flatten would not produce (hostile ids, rows stored by an older
version) and check what the views make of them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from schemas.tables import DATA_TABLES, DIMENSION_KEYS
from warehouse import analytics, ddl


def views_database(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    """The data tables and the dimensions created by the DDL, filled from `tables`, then the views."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name in [*DATA_TABLES, *DIMENSION_KEYS]:
        con.execute(ddl.create_table_sql(name))
        if name in tables:
            con.register("given", tables[name])
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM given")
            con.unregister("given")
    analytics.install(con, None, datetime(2026, 11, 4, tzinfo=UTC))
    return con
