"""`analytics.install` makes the views again only when they would differ, and leaves each view as its SQL says."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from warehouse import analytics, ddl

NOW = datetime(2026, 11, 4, tzinfo=UTC)
MORE = "CREATE OR REPLACE VIEW run_ids AS SELECT run_id FROM runs;\n"


def database() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name in ddl.ALL_TABLES:
        con.execute(ddl.create_table_sql(name))
    return con


def comments(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall())


def view_sql(con: duckdb.DuckDBPyConnection, name: str) -> str:
    row = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?", [name]).fetchone()
    assert row is not None, name
    return str(row[0])


def test_a_second_install_changes_no_view_and_each_view_says_what_it_holds() -> None:
    con = database()
    analytics.install(con, None, NOW, more_sql=MORE)
    first = comments(con)
    assert set(first) == {*analytics.VIEWS, "run_ids"}
    for name, description in analytics.VIEWS.items():
        assert first[name].startswith(description + " (piper-etl "), name
    oid = con.execute("SELECT view_oid FROM duckdb_views() WHERE view_name = 'failures'").fetchone()
    analytics.install(con, None, NOW, more_sql=MORE)
    assert comments(con) == first
    assert con.execute("SELECT view_oid FROM duckdb_views() WHERE view_name = 'failures'").fetchone() == oid, (
        "made again although nothing changed"
    )


def test_a_view_replaced_by_hand_a_changed_sql_or_a_new_column_make_the_views_again() -> None:
    con = database()
    analytics.install(con, None, NOW, more_sql=MORE)
    original = view_sql(con, "failures")
    con.execute("CREATE OR REPLACE VIEW failures AS SELECT 1 AS one")
    analytics.install(con, None, NOW, more_sql=MORE)
    assert view_sql(con, "failures") == original, "a view replaced by hand is restored"

    other = "CREATE OR REPLACE VIEW run_ids AS SELECT DISTINCT run_id FROM runs;\n"
    analytics.install(con, None, NOW, more_sql=other)
    assert "DISTINCT" in view_sql(con, "run_ids"), "changed SQL is installed"

    before = comments(con)
    con.execute("ALTER TABLE runs ADD COLUMN added_later VARCHAR")
    analytics.install(con, None, NOW, more_sql=other)
    after = comments(con)
    assert after.keys() == before.keys() and all(after[name] != before[name] for name in after), (
        "a table's new column makes every view again"
    )
    assert con.execute("SELECT count(*) FROM failures").fetchone() == (0,)
