"""One load's merge into `OUT/piper.duckdb`: its rows inserted from its landed parts, made current by one COMMIT.

A `Merge` begins a transaction on the writer connection. `insert_chunk` inserts one landed chunk's
`runs`, `turns` and `criteria_results` rows while the load may still be fetching; `commit` inserts
the parts not inserted yet, the load's `fetch_log`, `rejected_payloads` and `loads` rows, settles
which rows are current, and commits. Until that COMMIT nothing of the load is visible, and a crash
leaves the database as it was.

Which rows are current (the same rule as the Parquet views of `warehouse/views.py`):
a *run version* is a `fetch_log` row with outcome `loaded` (a session's run as one load stored it).
A version is current when no version of the same `run_id` is newer and no version of the same
`session_id` is newer, newer meaning a greater `loads.load_seq` (see `warehouse/leases.py`), then,
within one load, a greater `session_id`. The rows of `runs`, `turns` and `criteria_results` that
belong to a version that is not current are deleted. So two sessions returning one run id leave the
greater session's copy with its own children; a session whose run id changed keeps only its newest
run; a turn or criteria result id reported under two runs stays under both (see the view
`key_collisions`). Adding a version never makes an older one current again, so the database, which
keeps only current rows, always equals the rule applied to the whole history, in any merge order.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

import duckdb

from schemas.tables import DIMENSION_KEYS, HISTORY_TABLES
from warehouse.crash import crash_point
from warehouse.ddl import quote_ident
from warehouse.landing import DATA_TABLES, load_parts, part_path
from warehouse.objstore import Root

_TOUCHED = """CREATE OR REPLACE TEMP TABLE merge_touched AS
    SELECT DISTINCT run_id, session_id FROM fetch_log WHERE load_id = ? AND outcome = 'loaded'"""
_VERSIONS = """CREATE OR REPLACE TEMP TABLE merge_versions AS
    WITH groups AS (
        SELECT run_id, session_id FROM fetch_log
        WHERE outcome = 'loaded' AND (run_id IN (SELECT run_id FROM merge_touched)
                                      OR session_id IN (SELECT session_id FROM merge_touched))
    )
    SELECT f.run_id, f.session_id, f.load_id,
           row_number() OVER (PARTITION BY f.run_id
                              ORDER BY coalesce(l.load_seq, 0) DESC, f.load_id DESC, f.session_id DESC) = 1
           AND row_number() OVER (PARTITION BY f.session_id
                                  ORDER BY coalesce(l.load_seq, 0) DESC, f.load_id DESC) = 1 AS is_current
    FROM fetch_log f JOIN loads l USING (load_id)
    WHERE f.outcome = 'loaded' AND (f.run_id IN (SELECT run_id FROM groups)
                                    OR f.session_id IN (SELECT session_id FROM groups))"""
_NEWEST_VERSIONS = """CREATE OR REPLACE TEMP TABLE merge_versions AS
    WITH versions AS (
        SELECT run_id, session_id, load_id FROM fetch_log WHERE load_id = $load_id AND outcome = 'loaded'
        UNION
        SELECT run_id, session_id, _load_id FROM runs
        WHERE _load_id <> $load_id AND (run_id IN (SELECT run_id FROM merge_touched)
                                        OR session_id IN (SELECT session_id FROM merge_touched))
    )
    SELECT v.run_id, v.session_id, v.load_id,
           row_number() OVER (PARTITION BY v.run_id
                              ORDER BY coalesce(l.load_seq, 0) DESC, v.load_id DESC, v.session_id DESC) = 1
           AND row_number() OVER (PARTITION BY v.session_id
                                  ORDER BY coalesce(l.load_seq, 0) DESC, v.load_id DESC) = 1 AS is_current
    FROM versions v JOIN loads l USING (load_id)"""
"""`_VERSIONS` for a load newer than every other merged one, from `runs` instead of the whole `fetch_log`.

Every version newer than an old one is this load's, so the old versions that can lose are the current
ones, which are the versions `runs` holds; an old version that is no longer current has no rows left
to delete and, being older, cannot make one of this load's lose. So ranking this load's versions with
the current ones of the same runs and sessions decides what the whole history would.
That needs every version with rows in the database to have its `runs` row, which a load extracted from
compacted files may break (a compaction that rewrote `runs` without a superseded version may have left
that version's `criteria_results` in an older file): such loads settle against the whole fetch_log
(`settle_all`, tests/test_compact.py's 300 loads caught up into a new database).
"""
_NEWER_LOADS = """SELECT count(*) FROM loads WHERE load_id <> $load_id
    AND (coalesce(load_seq, 0) > $load_seq OR (coalesce(load_seq, 0) = $load_seq AND load_id > $load_id))"""


class Merge:
    """The open transaction of one load's merge; `commit` or `rollback` ends it."""

    def __init__(self, con: duckdb.DuckDBPyConnection, root: Root, load_id: str, *, settle_all: bool = False) -> None:
        self.con, self.root, self.load_id = con, root, load_id
        self.settle_all = settle_all  # rank against the whole fetch_log even when this load is the newest
        self.inserted: set[Root] = set()
        con.execute("BEGIN TRANSACTION")
        self.open = True

    def insert_chunk(self, part: str) -> None:
        """Insert the data rows of one landed chunk; its `fetch_log` rows wait for `commit`."""
        for table in DATA_TABLES:
            path = part_path(self.root, table, self.load_id, part)
            if path not in self.inserted and path.exists():
                self._insert(table, [path])

    def commit(self, load_row: dict[str, object]) -> None:
        """Insert what is left, the log tables and the `loads` row, settle the current rows, COMMIT."""
        con, load_id = self.con, self.load_id
        for table in DATA_TABLES:
            rest = [path for path in load_parts(self.root, load_id, table) if path not in self.inserted]
            if rest:
                self._insert(table, rest)
        # A load's log and dimension rows come with its `loads` row, in this transaction: a load without
        # one has none to replace, and skipping the DELETEs spares reading those tables' load-id columns
        # whole (`load_id = ?` skips no row group of the same day's loads: warehouse/snapshot.py).
        again = _count(con, "SELECT count(*) FROM loads WHERE load_id = ?", [load_id]) > 0
        for table in HISTORY_TABLES:
            if again:
                con.execute(f"DELETE FROM {quote_ident(table)} WHERE load_id = ?", [load_id])
            parts = load_parts(self.root, load_id, table)
            if parts:
                _insert_parts(con, table, parts)
        landed_dimensions = []
        for table in DIMENSION_KEYS:
            if again:
                con.execute(f"DELETE FROM {quote_ident(table)} WHERE _load_id = ?", [load_id])
            parts = load_parts(self.root, load_id, table)
            if parts:
                _insert_parts(con, table, parts)
                landed_dimensions.append(table)
        con.execute("DELETE FROM loads WHERE load_id = ?", [load_id])
        columns = list(load_row)
        con.execute(
            f"INSERT INTO loads ({', '.join(quote_ident(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})",
            [load_row[c] for c in columns],
        )
        seq = load_row.get("load_seq")
        self._settle(seq if isinstance(seq, int) else 0)
        for table in landed_dimensions:
            _settle_dimension(con, table, load_id)
        crash_point("merge-uncommitted")
        con.execute("COMMIT")
        self.open = False

    def rollback(self) -> None:
        """End the transaction without committing; a no-op after `commit`.

        Only called while an error is already on its way up (or after a commit), so a failing ROLLBACK
        (a COMMIT that failed has already ended the transaction) must not replace that error.
        """
        if self.open:
            self.open = False
            with suppress(duckdb.Error):
                self.con.execute("ROLLBACK")

    def _insert(self, table: str, parts: list[Root]) -> None:
        _insert_parts(self.con, table, parts)
        self.inserted.update(parts)

    def _newest(self, load_seq: int) -> bool:
        """Whether this load comes after every other load the database holds (by load_seq, then load_id)."""
        return _count(self.con, _NEWER_LOADS, {"load_id": self.load_id, "load_seq": load_seq}) == 0

    def _settle(self, load_seq: int) -> None:
        """Delete the rows of versions that are no longer current (module docstring)."""
        con = self.con
        con.execute(_TOUCHED, [self.load_id])
        if not self.settle_all and self._newest(load_seq):
            con.execute(_NEWEST_VERSIONS, {"load_id": self.load_id})
        else:  # merged after a newer load (catching up): its versions may lose to ones `runs` no longer holds
            con.execute(_VERSIONS)
        losers = _count(con, "SELECT count(*) FROM merge_versions WHERE NOT is_current")
        if losers:
            for table in DATA_TABLES:
                con.execute(
                    f"DELETE FROM {table} USING merge_versions v WHERE NOT v.is_current "
                    f"AND {table}.run_id = v.run_id AND {table}.session_id = v.session_id "
                    f"AND {table}._load_id = v.load_id"
                )
        con.execute("DROP TABLE merge_versions")
        con.execute("DROP TABLE merge_touched")


def _settle_dimension(con: duckdb.DuckDBPyConnection, table: str, load_id: str) -> None:
    """Keep, for each key this load landed, only the rows of the newest load that landed it.

    Newest by `loads.load_seq`, then load_id, as for run versions: merging an older load after a newer
    one (catching up) leaves the newer rows current.
    """
    t, key = quote_ident(table), quote_ident(DIMENSION_KEYS[table])
    con.execute(
        f"""DELETE FROM {t} USING (
            SELECT d.k, d._load_id FROM (
                SELECT DISTINCT {key} AS k, _load_id FROM {t}
                WHERE {key} IN (SELECT {key} FROM {t} WHERE _load_id = ?)
            ) d LEFT JOIN loads l ON l.load_id = d._load_id
            QUALIFY rank() OVER (PARTITION BY d.k ORDER BY coalesce(l.load_seq, 0) DESC, d._load_id DESC) > 1
        ) AS older WHERE {t}.{key} = older.k AND {t}._load_id = older._load_id""",
        [load_id],
    )


def merge_landed_load(con: duckdb.DuckDBPyConnection, root: Root, load_id: str, load_row: dict[str, object], *,
                      settle_all: bool = False) -> None:
    """Merge one whole landed load in a single transaction (catching up, or recovering); `settle_all`: `Merge`."""
    merge = Merge(con, root, load_id, settle_all=settle_all)
    try:
        merge.commit(load_row)
    except BaseException:
        merge.rollback()
        raise


def _insert_parts(con: duckdb.DuckDBPyConnection, table: str, parts: Sequence[Root]) -> None:
    con.execute(
        f"INSERT INTO {quote_ident(table)} BY NAME SELECT * FROM read_parquet(?, union_by_name = true)",
        [[str(p) for p in parts]],
    )


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | dict[str, object] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row else 0
