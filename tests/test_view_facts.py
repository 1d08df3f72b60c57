"""What the views learn from the files once (`views.read_facts`) changes how much they read, never what they show.

Every case compares the views built with the facts against the views built without them (the full
by-name union and the join against stale versions, always right), and checks which facts were found.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.tables import DATA_TABLES, RUNS
from tests.test_compact import settle
from tests.test_compact_versions import T0, data_tables, load
from warehouse import compact, compacted, views
from warehouse.ddl import ALL_TABLES, empty_select_sql
from warehouse.load import open_load
from warehouse.records import LoadCounts

SHOWN = (*ALL_TABLES, "current_versions")


def shown(root: Path, facts: views.Facts | None) -> dict[str, list[tuple[object, ...]]]:
    layout = views.read_layout(root)
    con = duckdb.connect()
    try:
        con.execute(views.current_state_sql(root.as_posix(), layout, facts))
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in SHOWN}
    finally:
        con.close()


def facts_of(out: Path) -> views.Facts:
    root = out / "parquet"
    return views.read_facts(root, views.read_layout(root))


def assert_facts_change_nothing(out: Path) -> views.Facts:
    root = out / "parquet"
    facts = facts_of(out)
    assert shown(root, facts) == shown(root, None)
    return facts


def current_runs(out: Path) -> list[object]:
    """The run ids of the current versions, sorted."""
    return sorted(str(row[0]) for row in shown(out / "parquet", facts_of(out))["current_versions"])


def test_new_sessions_after_a_compaction_need_no_join(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(out, auto=False, grace_seconds=0)
    load(out, [("s1", "r1"), ("s2", "r2")], T0)
    compact.compact(out)
    load(out, [("s3", "r3")], T0 + timedelta(minutes=1))  # pending, shares nothing with the index
    facts = assert_facts_change_nothing(out)
    assert facts.untouched
    layout = views.read_layout(out / "parquet")
    assert facts.unjoined == {path for table in DATA_TABLES for path in layout.compacted[table]}
    assert facts.plain == {path for table in (*ALL_TABLES, compacted.VERSIONS) for path in layout.paths(table)}
    assert facts.whole == set(DATA_TABLES)  # every row current: each table one read_parquet, no union
    assert current_runs(out) == ["r1", "r2", "r3"]


def test_uncovered_loads_superseding_each_other_are_not_read_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(out, auto=False, grace_seconds=0)
    load(out, [("s1", "r1")], T0)
    compact.compact(out)
    load(out, [("s2", "r2")], T0 + timedelta(minutes=1))
    load(out, [("s2", "r2")], T0 + timedelta(minutes=2))  # the first copy of r2 is no longer current
    facts = assert_facts_change_nothing(out)
    assert facts.untouched and not facts.whole
    assert current_runs(out) == ["r1", "r2"]
    assert len(shown(out / "parquet", facts)["criteria_results"]) == 4, "two criteria a run, one copy of r2"


def test_a_pending_refetch_of_an_indexed_session_is_joined(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(out, auto=False, grace_seconds=0)
    load(out, [("s1", "r1"), ("s2", "r2")], T0)
    compact.compact(out)
    load(out, [("s1", "r1")], T0 + timedelta(minutes=1))  # a newer copy of s1's run, not compacted yet
    facts = assert_facts_change_nothing(out)
    assert not facts.untouched and not facts.unjoined and not facts.whole
    runs = shown(out / "parquet", facts)["runs"]
    assert [(row[0], row[1]) for row in runs] == [("r1", "s1"), ("r2", "s2")], "one copy of r1, the newer"


@pytest.mark.parametrize("keep_superseded", [False, True])
def test_a_superseded_version_in_the_index_is_joined_only_where_kept(tmp_path: Path, keep_superseded: bool) -> None:
    out = tmp_path / "out"
    settle(out, auto=False, keep_superseded=keep_superseded, grace_seconds=0)
    load(out, [("s1", "r1"), ("s2", "r2")], T0)
    load(out, [("s2", "r9")], T0 + timedelta(minutes=1))  # s2's run id changed: r2 is stale
    compact.compact(out)
    facts = assert_facts_change_nothing(out)
    layout = views.read_layout(out / "parquet")
    data_files = {path for table in DATA_TABLES for path in layout.compacted[table]}
    # the index holds r2's false row; files written without its rows are flagged, kept rows are joined
    assert facts.untouched and facts.unjoined == (set() if keep_superseded else data_files)
    assert current_runs(out) == ["r1", "r9"]


def test_a_compaction_superseding_a_version_in_a_file_it_keeps_unflags_that_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(out, auto=False, grace_seconds=0)
    with open_load(out, format="parquet", now=T0) as running:
        tables = data_tables(running.load_id, [(f"s{n}", f"r{n}") for n in range(40)], T0)
        noise = [os.urandom(32_000).hex() for _ in range(40)]  # incompressible: the turns file is not small
        tables["turns"] = tables["turns"].set_column(6, "response_content", pa.array(noise))
        running.land("main-0001", tables)
        running.commit("succeeded", LoadCounts(), {})
    compact.compact(out)
    root = out / "parquet"
    (turns_file,) = compacted.read_manifest(root).table_files("turns")
    assert turns_file.bytes >= compact.SMALL_FILE_BYTES and turns_file.current
    load(out, [("s1", "r99")], T0 + timedelta(minutes=1))  # s1's run changed: r1's turn stays in the big file
    compact.compact(out)
    manifest = compacted.read_manifest(root)
    assert [f.current for f in manifest.table_files("turns") if f.path == turns_file.path] == [False]
    assert all(f.current for f in manifest.table_files("runs"))  # rewritten (small) without r1
    facts = assert_facts_change_nothing(out)
    assert turns_file.path not in facts.unjoined and "turns" not in facts.whole and "runs" in facts.whole
    assert "r1" not in {row[1] for row in shown(root, facts)["turns"]}
    assert current_runs(out) == sorted(["r99", *(f"r{n}" for n in range(2, 40)), "r0"])


def test_a_compacted_file_in_an_older_schema_is_read_by_name(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(out, auto=False, grace_seconds=0)
    load(out, [("s1", "r1"), ("s2", "r2")], T0)
    compact.compact(out)
    root = out / "parquet"
    (older,) = views.read_layout(root).compacted["runs"]
    table = pq.read_table(root / older)
    pq.write_table(table.drop_columns(["agent_id", "agent_name", "is_test"]), root / older)  # as before they existed
    facts = assert_facts_change_nothing(out)
    assert older not in facts.plain and facts.plain
    runs = shown(root, facts)["runs"]
    assert len(runs) == 2 and all(row[-3:] == (None, None, None) for row in runs)


def test_an_unindexed_manifest_is_always_joined(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(out, auto=False, grace_seconds=0)
    load(out, [("s1", "r1")], T0)
    compact.compact(out)
    root = out / "parquet"
    manifest = compacted.read_manifest(root)
    files = {table: listed for table, listed in manifest.files.items() if table != compacted.VERSIONS}
    old = compacted.Manifest(manifest.generation, manifest.settings, manifest.covered, files)  # format 1: no index
    compacted.write_manifest(root, old)
    load(out, [("s2", "r2")], T0 + timedelta(minutes=1))
    facts = assert_facts_change_nothing(out)
    assert facts == views.Facts(facts.plain)
    assert current_runs(out) == ["r1", "r2"]


def test_source_sql_mixes_current_and_older_files_by_name(tmp_path: Path) -> None:
    row = {"run_id": "r1", "session_id": "s1", "org_id": "o", "turn_count": 1, "passed_turn_count": 1,
           "criteria_count": 0, "passed_criteria_count": 0, "failed_criteria_count": 0, "_load_id": "L1",
           "_loaded_at": T0, "is_test": True}
    pq.write_table(pa.Table.from_pylist([row], schema=RUNS), tmp_path / "current.parquet")
    older = pa.schema([field for field in RUNS if field.name not in ("agent_id", "agent_name", "is_test")])
    pq.write_table(pa.Table.from_pylist([{**row, "run_id": "r0"}], schema=older), tmp_path / "older.parquet")
    con = duckdb.connect()
    sql = views.source_sql(tmp_path.as_posix(), "runs", ["current.parquet", "older.parquet"], {"current.parquet"})
    assert "union_by_name" in sql  # only the older file is read by name
    assert con.execute(f"DESCRIBE {sql}").fetchall() == con.execute(f"DESCRIBE {empty_select_sql('runs')}").fetchall()
    assert con.execute(f"SELECT run_id, is_test FROM {sql} ORDER BY 1").fetchall() == [("r0", None), ("r1", True)]
    plain = views.source_sql(tmp_path.as_posix(), "runs", ["current.parquet"], {"current.parquet"})
    assert "union_by_name" not in plain and "UNION" not in plain
    assert con.execute(f"DESCRIBE {plain}").fetchall() == con.execute(f"DESCRIBE {empty_select_sql('runs')}").fetchall()
