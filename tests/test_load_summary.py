"""The verdict summary a load publishes (the flow's artifact) covers that load's runs alone, read from their rows.

It must say exactly what the whole-state summary of a folder holding only those runs says: the same
runs, verdicts, scenarios, criteria questions and critiques, from either store.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Cli, SimulatedPiper, load_args
from tests.test_compact_versions import T0, data_tables
from warehouse import publish, reader, store
from warehouse.load import OutputFormat, open_load
from warehouse.records import LoadCounts
from warehouse.report_data import collect
from warehouse.report_markdown import ALL_LOADS, summary_markdown


def body(markdown: str, scope: str) -> str:
    heading, _, rest = markdown.partition("\n")
    assert heading == f"## Verdicts and judge cost ({scope})", heading
    return rest


def whole_state_without_changes(out_dir: Path) -> str:
    """The whole-state summary, without what changed in the week (a load's summary does not judge that)."""
    opened = reader.open_analytics(out_dir)
    try:
        return summary_markdown(replace(collect(opened), changes=None))
    finally:
        opened.close()


def newest_load(out_dir: Path) -> str:
    con = store.connect(out_dir / store.DATABASE_FILE, read_only=True)
    try:
        row = con.execute("SELECT load_id FROM loads ORDER BY load_seq DESC LIMIT 1").fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


def test_a_loads_summary_is_the_whole_state_summary_of_its_runs_alone(
    piper: SimulatedPiper, tmp_path: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids
    alone, grown = tmp_path / "alone", tmp_path / "grown"
    assert cli(*load_args(piper, alone, *ids[6:12])).code == 0
    expected = body(whole_state_without_changes(alone), ALL_LOADS)
    assert "| scenario | runs |" in expected and f"{len(ids[6:12])} runs" in expected
    assert cli(*load_args(piper, grown, *ids[:8])).code == 0
    assert cli(*load_args(piper, grown, "--refetch", *ids[6:12])).code == 0  # two of them stored before
    load_id = newest_load(grown)
    database = grown / store.DATABASE_FILE
    con = duckdb.connect()  # as the writer's: the database attached as `piper` to an in-memory one
    try:
        con.execute(f"ATTACH ? AS {store.CATALOG} (READ_ONLY)", [str(database)])
        from_database = publish.load_summary_markdown(con, store.CATALOG, load_id, database)
    finally:
        con.close()
    assert body(from_database, publish.LOAD_SCOPE) == expected
    from_parquet = publish.parquet_load_summary_markdown(grown / "parquet", load_id)
    assert body(from_parquet, publish.LOAD_SCOPE) == expected


@pytest.mark.parametrize("format", ["parquet", "both"])
def test_the_commit_returns_the_summary_of_its_own_runs(tmp_path: Path, format: OutputFormat) -> None:
    out = tmp_path / "out"
    for minutes, versions in ((0, [("s1", "r1"), ("s2", "r2"), ("s3", "r3")]), (1, [("s3", "r3"), ("s4", "r4")])):
        at = T0 + timedelta(minutes=minutes)
        with open_load(out, format=format, now=at) as load:
            load.land("main-0001", data_tables(load.load_id, versions, at))
            committed = load.commit("succeeded", LoadCounts(), {}, summarize=True)
    assert committed.verdicts_markdown is not None
    assert "2 runs, 2 final" in body(committed.verdicts_markdown, publish.LOAD_SCOPE)
