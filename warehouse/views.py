"""The current state over the Parquet landing files alone, as SQL views.

Only committed loads count, and the views name their files one by one (`read_layout`): the compacted
files of the manifest (`warehouse/compacted.py`, with its run-version index), then the parts of the
committed loads no compaction covers yet. A load still running, or one that died, is invisible, and a
compaction that commits while a reader holds older views leaves the files those views name for the
grace period. A run's current rows are those of its current *version*, by the rule `warehouse/merge.py`
states and the DuckDB merge applies: exactly what `piper.duckdb` holds. `fetch_log`,
`rejected_payloads` and `loads` keep every row of every committed load. The same SQL is written to
`OUT/current_state.sql` for people who use Parquet only:

    cd OUT && duckdb -c ".read current_state.sql" -c "SELECT status, count(*) FROM runs GROUP BY 1"
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from schemas.tables import DATA_TABLES, DIMENSION_KEYS, LANDED_TABLES
from warehouse import compacted, landing, objstore
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


@dataclass(frozen=True)
class Layout:
    """The committed files of a landing in one listing: the compacted files, then the parts of committed
    loads that no compaction covers yet. Paths are relative to the landing root, POSIX.
    """

    compacted: dict[str, list[str]]
    pending: dict[str, list[str]]
    pending_loads: frozenset[str]
    generation: int
    indexed: bool  # the compacted run-version index covers every compacted load (`compacted.Manifest`)

    def tables(self) -> set[str]:
        return {table for table in ALL_TABLES if self.compacted.get(table) or self.pending.get(table)}

    def paths(self, table: str) -> list[str]:
        return [*self.compacted.get(table, []), *self.pending.get(table, [])]

    def file_count(self) -> int:
        return sum(len(self.paths(table)) for table in (*ALL_TABLES, compacted.VERSIONS))


def read_layout(root: objstore.Root, *, manifest: compacted.Manifest | None = None) -> Layout:
    """List the committed files under `root` (a landing root, `OUT/parquet`, or its URL on an object store).

    The manifest is read first: what it covers only grows, and a covered load's own parts stay for
    the grace period after a compaction covers them, so a listing taken across a compaction is still
    one whole state (the older one). Then the `loads` rows, then the parts: a load's parts all land
    before its `loads` row, so a load seen committed is seen whole. `manifest`: the one a compaction
    is about to commit, instead of the one on disk.
    """
    manifest = manifest or landing.read_manifest(root)
    pending_loads = frozenset(landing.landed_load_rows(root) - manifest.covered)
    pending: dict[str, list[str]] = {}
    for table in LANDED_TABLES:
        names = sorted(name for name in _names(root / table)
                       if name.endswith(".parquet") and not name.startswith(".")
                       and landing.load_id_of_name(name) in pending_loads)
        pending[table] = [f"{table}/{name}" for name in names]
    pending[landing.LOADS_TABLE] = [f"{landing.LOADS_TABLE}/{load_id}.parquet" for load_id in sorted(pending_loads)]
    compacted_files = {table: [f.path for f in manifest.table_files(table)]
                       for table in (*ALL_TABLES, compacted.VERSIONS)}
    return Layout(compacted_files, pending, pending_loads, manifest.generation, manifest.index_complete)


def _names(folder: objstore.Root) -> list[str]:
    return objstore.names(folder)


def read_files_sql(root: str, paths: list[str], *, by_name: bool = True) -> str:
    """`read_parquet` over exactly these files (paths relative to `root`).

    `by_name`: every column any file has, matched by name (files in older schemas lack some columns);
    False when every file is in one schema, which DuckDB then binds from one file's footer, not all.
    """
    listed = ", ".join("'" + f"{root}/{path}".replace("'", "''") + "'" for path in paths)
    return f"read_parquet([{listed}], union_by_name = true)" if by_name else f"read_parquet([{listed}])"


def source_sql(root: str, table: str, paths: list[str], plain: Collection[str] = frozenset()) -> str:
    """The rows of these files of `table`, typed by the current schema (older parts lack some columns).

    `plain`: paths known to be in exactly the current schema (`Facts.plain`): read as they are, without
    the by-name union, which binds every file's footer wherever a view names the table.
    """
    if not paths:
        return f"({empty_select_sql(table)})"
    current = [path for path in paths if path in plain]
    older = [path for path in paths if path not in plain]
    if not older:
        return f"(SELECT * FROM {read_files_sql(root, current, by_name=False)})"
    selects = [empty_select_sql(table)]
    selects += [f"SELECT * FROM {read_files_sql(root, current, by_name=False)}"] if current else []
    selects.append(f"SELECT * FROM {read_files_sql(root, older)}")
    return "(" + " UNION ALL BY NAME ".join(selects) + ")"


@dataclass(frozen=True)
class Facts:
    """What the files of one layout are, read from them once (they never change): lets the SQL do less.

    `plain`: the files whose footer has exactly the current schema of their table (names, order,
    types): read as they are, not through the by-name union. `untouched`: the index is complete and no
    version of the loads no compaction covers yet shares a run or a session with it, so none supersedes
    an indexed version nor loses to one: they are ranked among themselves. `unjoined`: the compacted
    files of `runs`, `turns` and `criteria_results` that hold no row of a stale version (untouched,
    and the index marks no version superseded, or the manifest flags the file `current`): shown as
    they are, without joining their keys against `_stale_versions` (most of a query's cost). `whole`:
    the data tables whose files are all plain and unjoined and whose uncovered loads' rows are all of
    current versions: read as one `read_parquet`, no union at all (over a union DuckDB reads a column
    of every row even for a `count(*)`).
    """

    plain: frozenset[str] = frozenset()
    untouched: bool = False
    unjoined: frozenset[str] = frozenset()
    whole: frozenset[str] = frozenset()


def read_facts(parquet_root: Path, layout: Layout, manifest: compacted.Manifest | None = None) -> Facts:
    """The `Facts` of `layout`'s files under `parquet_root`: their footers, the index, the uncovered loads' rows.

    `manifest`: the one `layout` lists (a compaction about to commit it); else the one on disk, whose
    `current` flags count only when it is still the manifest of `layout` (same generation).
    """
    plain = frozenset(path for table in (*ALL_TABLES, compacted.VERSIONS) for path in layout.paths(table)
                      if _in_current_schema(parquet_root / path, table))
    if not layout.indexed:
        return Facts(plain)
    root = parquet_root.as_posix()
    index = layout.compacted.get(compacted.VERSIONS, [])
    manifest = manifest or compacted.read_manifest(parquet_root)
    flagged = {f.path for table in DATA_TABLES for f in manifest.table_files(table)
               if f.current and manifest.generation == layout.generation}
    con = duckdb.connect()
    try:
        listed = read_files_sql(root, index, by_name=not set(index) <= plain)
        indexed = f"(SELECT run_id, session_id, is_current FROM {listed})"
        if index and not _untouched(con, root, layout, plain, indexed):
            return Facts(plain)
        superseded = bool(index) and _exists(con, f"SELECT 1 FROM {indexed} WHERE NOT is_current LIMIT 1")
        unjoined = frozenset(path for table in DATA_TABLES for path in layout.compacted[table]
                             if not superseded or path in flagged)
        facts = Facts(plain, True, unjoined)
        return replace(facts, whole=_whole(con, root, layout, facts))
    finally:
        con.close()


def _in_current_schema(path: Path, table: str) -> bool:
    """Whether the file's footer has the table's columns, in order, each of exactly its Arrow type."""
    schema = compacted.VERSIONS_SCHEMA if table == compacted.VERSIONS else ALL_TABLES[table]
    found = pq.read_schema(path)
    return found.names == schema.names and all(f.type == want.type for f, want in zip(found, schema, strict=True))


def _untouched(con: duckdb.DuckDBPyConnection, root: str, layout: Layout, plain: frozenset[str],
               indexed: str) -> bool:
    """Whether no `loaded` version of the uncovered loads shares a run or a session with the index."""
    if not layout.pending_loads:
        return True
    log = source_sql(root, "fetch_log", layout.pending["fetch_log"], plain)
    pending = f"(SELECT run_id, session_id FROM {log} WHERE outcome = 'loaded')"
    touched = " UNION ALL ".join(f"SELECT 1 FROM {indexed} AS i SEMI JOIN {pending} AS p ON i.{key} = p.{key}"
                                 for key in ("run_id", "session_id"))
    return not _exists(con, f"SELECT 1 FROM ({touched}) LIMIT 1")


def _whole(con: duckdb.DuckDBPyConnection, root: str, layout: Layout, facts: Facts) -> frozenset[str]:
    """The data tables that can be read as one `read_parquet` (`Facts.whole`): untouched, so the uncovered
    loads' versions are ranked among themselves; every one must be the newest, every row of one."""
    tables = [table for table in DATA_TABLES if set(layout.paths(table)) <= facts.plain
              and set(layout.compacted[table]) <= facts.unjoined]
    if not any(layout.pending[table] for table in tables):
        return frozenset(tables)
    log = source_sql(root, "fetch_log", layout.pending["fetch_log"], facts.plain)
    loads = source_sql(root, "loads", layout.pending["loads"], facts.plain)
    con.execute(
        "CREATE TEMP TABLE facts_versions AS SELECT *, " + NEWEST_SQL + " AS newest FROM (\n"
        "SELECT f.run_id, f.session_id, f.load_id, coalesce(l.load_seq, 0) AS load_seq\n"
        f"FROM (SELECT * FROM {log} {FETCH_LOG_NEWEST}) AS f JOIN {loads} AS l USING (load_id)\n"
        "WHERE f.outcome = 'loaded')")
    if _exists(con, "SELECT 1 FROM facts_versions WHERE NOT newest LIMIT 1"):
        return frozenset()
    return frozenset(table for table in tables if not layout.pending[table] or not _exists(
        con, f"SELECT 1 FROM {source_sql(root, table, layout.pending[table], facts.plain)} AS landed "
             f"ANTI JOIN facts_versions AS v ON {version_match('landed', 'v')} LIMIT 1"))


def _exists(con: duckdb.DuckDBPyConnection, sql: str) -> bool:
    return con.execute(sql).fetchone() is not None


FETCH_LOG_NEWEST = "QUALIFY row_number() OVER (PARTITION BY load_id, session_id ORDER BY fetched_at DESC) = 1"
"""One `fetch_log` row per load and session (compaction stores just that one, so compacted rows need no window)."""

NEWEST_SQL = """row_number() OVER (PARTITION BY run_id ORDER BY load_seq DESC, load_id DESC, session_id DESC) = 1
    AND row_number() OVER (PARTITION BY session_id ORDER BY load_seq DESC, load_id DESC) = 1"""
"""True for the newest version of its run and of its session among the rows ranked (the rule of `merge.py`)."""

EMPTY_VERSIONS = ("SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS session_id, NULL::VARCHAR AS load_id, "
                  "NULL::BIGINT AS load_seq, NULL::BOOLEAN AS is_current WHERE false")


def versions_sql(fetch_log: str) -> str:
    """The run versions (`loaded` rows) of a `fetch_log` relation, with their load's `load_seq`."""
    return ("SELECT f.run_id, f.session_id, f.load_id, coalesce(l.load_seq, 0) AS load_seq\n"
            f"FROM {fetch_log} AS f JOIN loads l USING (load_id) WHERE f.outcome = 'loaded'")


def contest_sql(new: str) -> str:
    """The versions of relation `new`, and the indexed versions sharing a run or session with them, ranked.

    `pending` tells them apart; `newest` is the rule applied to these rows, which is the rule applied to
    the whole history for every row of `new` (the index holds every covered version of those runs and
    sessions) and for every indexed version that was current (it was the newest of the covered ones).
    """
    touched = " UNION ALL ".join(
        f"SELECT i.* FROM _indexed_versions AS i SEMI JOIN {new} AS n ON i.{key} = n.{key}"
        for key in ("run_id", "session_id"))
    return (f"SELECT *, {NEWEST_SQL} AS newest FROM (\n"
            f"    SELECT run_id, session_id, load_id, load_seq, true AS pending, true AS is_current FROM {new}\n"
            "    UNION ALL\n"
            "    SELECT run_id, session_id, load_id, any_value(load_seq), false, bool_and(is_current)\n"
            f"    FROM ({touched}) GROUP BY run_id, session_id, load_id)")


def version_match(rows: str, versions: str, load_key: str = "_load_id") -> str:
    return (f"{rows}.run_id = {versions}.run_id AND {rows}.session_id = {versions}.session_id "
            f"AND {rows}.{load_key} = {versions}.load_id")


PENDING_CURRENT = "(SELECT run_id, session_id, load_id FROM _version_contest WHERE pending AND newest)"
"""The current versions of the loads no compaction covers yet."""


def current_state_sql(root: str, layout: Layout, facts: Facts | None = None) -> str:
    """SQL creating the current-state views over the files of `layout`, named relative to `root`.

    Which run versions are current comes from the compacted run-version index (`compacted.VERSIONS`)
    and a window over the versions of the loads no compaction covers yet, together with the indexed
    versions of the same runs and sessions only: the `_` relations. Compacted rows of `runs`, `turns`
    and `criteria_results` are shown unless their version is stale (`_stale_versions`, few rows); the
    uncovered loads' rows when their version is current. So a query's cost follows the few loads since
    the last compaction, not the history. `facts` (`read_facts`, of these very files) lets the SQL skip
    what cannot matter: the by-name union for files in the current schema, and, when nothing can be
    stale, the join of compacted rows against stale versions, the index's part in the contest, any union.

    The version sets (`_pending_versions`, `_version_contest`, `_stale_versions`) are TEMP tables,
    computed once when the SQL runs: the files it names never change, so they are what a view would
    compute, and every later view binds and reads a few small tables instead of re-deriving them from
    the files (a view that nests views is bound again, files and all, wherever it is named). The
    Parquet metadata cache is turned on for the same reason: the views name each file many times.
    """
    facts = facts or Facts()
    plain = facts.plain
    src = {table: source_sql(root, table, layout.paths(table), plain) for table in ALL_TABLES}
    pending_log = source_sql(root, "fetch_log", layout.pending["fetch_log"], plain)
    pending_log = f"(SELECT * FROM {pending_log}\n{FETCH_LOG_NEWEST})"
    fetch_log = f"SELECT * FROM {pending_log}"
    compacted_log = source_sql(root, "fetch_log", layout.compacted["fetch_log"], plain)
    if layout.compacted["fetch_log"]:
        fetch_log = f"SELECT * FROM {compacted_log}\nUNION ALL BY NAME ({fetch_log})"
    index = layout.compacted[compacted.VERSIONS]
    if not layout.indexed:  # written before the index: rank the compacted fetch_log (the next compaction indexes)
        indexed = f"SELECT *, {NEWEST_SQL} AS is_current FROM ({versions_sql(compacted_log)})"
    elif index:
        indexed = ("SELECT run_id, session_id, load_id, load_seq, is_current FROM "
                   + read_files_sql(root, index, by_name=not set(index) <= plain))
    else:
        indexed = EMPTY_VERSIONS
    if facts.untouched:  # no pending version shares a run or session with the index: rank them alone
        contest = (f"SELECT *, {NEWEST_SQL} AS newest FROM (SELECT run_id, session_id, load_id, load_seq, "
                   "true AS pending, true AS is_current FROM _pending_versions)")
        stale = "SELECT run_id, session_id, load_id FROM _indexed_versions WHERE NOT is_current"
    else:
        contest = contest_sql("_pending_versions") if layout.pending_loads else (
            "SELECT *, true AS pending, true AS newest FROM (" + EMPTY_VERSIONS + ")")
        stale = ("SELECT run_id, session_id, load_id FROM _indexed_versions WHERE NOT is_current\n"
                 "UNION ALL SELECT run_id, session_id, load_id FROM _version_contest WHERE NOT pending AND NOT newest")
    statements = [
        "SET parquet_metadata_cache = true",
        f"CREATE OR REPLACE VIEW loads AS SELECT * FROM {src['loads']}",
        f"CREATE OR REPLACE VIEW fetch_log AS {fetch_log}",
        f"CREATE OR REPLACE VIEW rejected_payloads AS SELECT * FROM {src['rejected_payloads']}",
        f"CREATE OR REPLACE VIEW sync_state AS SELECT * FROM {src['sync_state']}",
        f"CREATE OR REPLACE VIEW _indexed_versions AS {indexed}",
        f"CREATE OR REPLACE TEMP TABLE _pending_versions AS {versions_sql(pending_log)}",
        f"CREATE OR REPLACE TEMP TABLE _version_contest AS {contest}",
        f"CREATE OR REPLACE TEMP TABLE _stale_versions AS\n{stale}",
        "CREATE OR REPLACE VIEW current_versions AS\n"
        "SELECT i.run_id, i.session_id, i.load_id FROM _indexed_versions AS i\n"
        f"ANTI JOIN _stale_versions AS s ON {version_match('i', 's', 'load_id')} WHERE i.is_current\n"
        f"UNION ALL {PENDING_CURRENT[1:-1]}",
    ]
    for table in DIMENSION_KEYS:
        statements.append(f"CREATE OR REPLACE VIEW {quote_ident(table)} AS {dimension_sql(table, src[table])}")
    for table in DATA_TABLES:
        statements.append(f"CREATE OR REPLACE VIEW {quote_ident(table)} AS {data_sql(root, table, layout, facts)}")
    return ";\n\n".join(statements) + ";\n\n" + KEY_COLLISIONS_SQL


def data_sql(root: str, table: str, layout: Layout, facts: Facts | None = None) -> str:
    """The current rows of a data table: compacted rows of versions not stale, new rows of current versions."""
    facts = facts or Facts()
    if table in facts.whole and layout.paths(table):
        return f"SELECT * FROM {source_sql(root, table, layout.paths(table), facts.plain)}"
    selects = []
    unjoined = [path for path in layout.compacted[table] if path in facts.unjoined]
    joined = [path for path in layout.compacted[table] if path not in facts.unjoined]
    if unjoined:
        selects.append(f"SELECT landed.* FROM {source_sql(root, table, unjoined, facts.plain)} AS landed")
    if joined:
        selects.append(f"SELECT landed.* FROM {source_sql(root, table, joined, facts.plain)} AS landed\n"
                       f"ANTI JOIN _stale_versions AS v ON {version_match('landed', 'v')}")
    if layout.pending[table]:
        selects.append(f"SELECT landed.* FROM {source_sql(root, table, layout.pending[table], facts.plain)} AS landed\n"
                       f"SEMI JOIN {PENDING_CURRENT} AS v ON {version_match('landed', 'v')}")
    return "\nUNION ALL\n".join(selects) or f"SELECT * FROM ({empty_select_sql(table)})"


def dimension_sql(table: str, source: str) -> str:
    """The rows of `source` that are current: per key, those of the newest committed load that landed it."""
    return (
        f"SELECT landed.* FROM {source} AS landed\n"
        "JOIN loads l ON l.load_id = landed._load_id\n"
        f"QUALIFY rank() OVER (PARTITION BY landed.{quote_ident(DIMENSION_KEYS[table])}\n"
        "                      ORDER BY coalesce(l.load_seq, 0) DESC, landed._load_id DESC) = 1"
    )


def present_tables(parquet_root: objstore.Root) -> set[str]:
    """The tables that have committed files under `parquet_root`."""
    return read_layout(parquet_root).tables()


def relative_root(out_dir: Path, parquet_root: objstore.Root) -> str:
    """`parquet_root` as `current_state.sql` names it: relative to OUT when inside, so the folder can move.

    A landing on an object store is named by its URL (`s3://...`, for readers with DuckDB's httpfs).
    """
    if isinstance(parquet_root, objstore.ObjectPath):
        return parquet_root.as_posix()
    inside = parquet_root.is_relative_to(out_dir)
    return parquet_root.relative_to(out_dir).as_posix() if inside else parquet_root.as_posix()


def open_current_state(parquet_root: objstore.Root | str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose views show the current state of the Parquet files.

    `parquet_root`: `OUT/parquet`, or its URL on an object store (`s3://bucket/prefix/parquet`), read
    through fsspec (`objstore.register`): no DuckDB extension needed.

    Without `read_facts`: a load reading its state opens this once and asks a few questions, so reading
    the facts would cost it more than they save (they pay off for `current_state.sql`, written once and
    read by every reader). The rows shown are the same either way (tests/test_view_facts.py).
    """
    root = objstore.landing_root(parquet_root) if isinstance(parquet_root, str) else parquet_root
    con = duckdb.connect()
    try:
        objstore.register(con, root)
        con.execute(current_state_sql(root.as_posix(), read_layout(root)))
    except BaseException:
        con.close()
        raise
    return con
