"""Compaction keeps the Parquet landing's file count bounded and every table's content unchanged."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.fake_api import FakeDataset
from flows.chunks import log_row, log_table
from schemas.flatten import build_tables, flatten_run
from schemas.tables import DATA_TABLES, SESSIONS
from tests.conftest import Cli, SimulatedPiper, load_args
from tests.test_dimension_tables import land, session
from warehouse import compact, compacted, store, views
from warehouse.ddl import ALL_TABLES
from warehouse.load import OutputFormat, open_load
from warehouse.records import LoadCounts

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def contents(out_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table as the Parquet views show it, in a stable order."""
    con = views.open_current_state(out_dir / "parquet")
    try:
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in ALL_TABLES}
    finally:
        con.close()


def assert_every_table_equals_duckdb(out_dir: Path) -> None:
    parquet = views.open_current_state(out_dir / "parquet")
    database = store.connect(out_dir / store.DATABASE_FILE, read_only=True)
    try:
        for table in ALL_TABLES:
            columns = ", ".join(f'"{row[0]}"' for row in database.execute(f"DESCRIBE {table}").fetchall())
            sql = f"SELECT {columns} FROM {table} ORDER BY ALL"
            assert parquet.execute(sql).fetchall() == database.execute(sql).fetchall(), f"{table} differs"
    finally:
        parquet.close()
        database.close()


def files_under(out_dir: Path) -> list[Path]:
    return [path for path in (out_dir / "parquet").rglob("*") if path.is_file()]


def compacted_rows(out_dir: Path, table: str) -> int:
    manifest = compacted.read_manifest(out_dir / "parquet")
    return sum(pq.read_metadata(out_dir / "parquet" / f.path).num_rows for f in manifest.table_files(table))


def settle(out_dir: Path, **settings: object) -> None:
    compact.change_settings(out_dir, compacted.Settings(**settings))  # type: ignore[arg-type]


def land_sessions(out_dir: Path, dataset: FakeDataset, session_ids: list[str], *, format: OutputFormat,
                  now: datetime, landing_url: str | None = None, database: Path | None = None) -> None:
    """One load of these sessions through the real load transaction, from the dataset's payloads (no HTTP).

    Its chunk is what a fetch would land: the flattened runs, a `loaded` row of `fetch_log` each, and
    the sessions' dimension rows; the commit runs the load's own compaction past the threshold.
    `landing_url` and `database`: an object-store landing, with `out_dir` its local state folder (as `open_load`).
    """
    with open_load(out_dir, format=format, now=now, landing_url=landing_url, database=database) as load:
        flats = [flatten_run(dataset.run_for(session_id), session_id=session_id, org_id=dataset.org_id)
                 for session_id in session_ids]
        tables = build_tables(flats, load_id=load.load_id, loaded_at=now)
        tables["fetch_log"] = log_table([
            log_row(load.load_id, session_id, "loaded", fetched_at=now, http_status=200, attempts=1,
                    run_id=str(flat.run["run_id"])) for session_id, flat in zip(session_ids, flats, strict=True)])
        tables["sessions"] = pa.Table.from_pylist(
            [session(session_id, f"agent-{now.hour}", load.load_id, now) for session_id in session_ids],
            schema=SESSIONS)
        load.land("main-0001", tables)
        load.commit("succeeded", LoadCounts(Counter(loaded=len(session_ids)),
                                            Counter({t: tables[t].num_rows for t in DATA_TABLES})), {})


def test_three_hundred_loads_leave_at_most_sixty_files(tmp_path: Path) -> None:
    """300 loads of 10 sessions, each committed by the load transaction, whose own compaction keeps the
    folder small; half of them fetch earlier sessions again (superseded run versions and sessions rows)."""
    dataset = FakeDataset.generate(seed=5, sessions=3000, payload_kb=2.0)
    ids = dataset.session_ids
    out_dir = tmp_path / "out"
    settle(out_dir, grace_seconds=0)  # replaced files go at once here; the grace period has its own test
    most = 0
    for batch in range(300):
        if batch == 150:
            dataset.complete_pending()  # later loads fetch these again: superseded rows to drop
        again = ids[(batch - 150) * 10:(batch - 149) * 10] if batch >= 150 else []
        land_sessions(out_dir, dataset, [*ids[batch * 10:(batch + 1) * 10], *again], format="parquet",
                      now=T0 + timedelta(minutes=batch))
        most = max(most, len(files_under(out_dir)))
    assert most <= 60, f"{most} files under parquet/"
    assert compacted.read_manifest(out_dir / "parquet").generation >= 300 // compact.AUTO_AFTER_LOADS
    state = contents(out_dir)
    assert len(state["loads"]) == 300
    assert len(state["runs"]) == len({row[0] for row in state["runs"]}) == 3000
    assert len(state["sessions"]) == 3000
    assert compacted_rows(out_dir, "runs") <= 3000 + 10, "superseded run versions are dropped"
    # A load that writes DuckDB catches up with all 300 compacted loads: both stores agree.
    land_sessions(out_dir, dataset, ids[:1], format="both", now=T0 + timedelta(days=1))
    assert_every_table_equals_duckdb(out_dir)


def land_history(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    """Loads of every kind into `out_dir` (format both): data, refetches, a rejected payload, dimensions."""
    ids = list(piper.dataset.session_ids)
    piper.dataset.add_session("bad", status="passed")
    piper.dataset.set_payload("bad", [1, 2, 3])
    assert cli(*load_args(piper, out_dir, "--chunk-size", "4", *ids[:12], "bad", "unknown")).code == 1
    land(open_load(out_dir, format="both", now=T0), [("s1", "agent-a"), ("s2", "agent-a")],
         [("c1", "sc1"), ("c2", "sc1"), ("c9", "sc2")], T0)
    piper.dataset.complete_pending()
    assert cli(*load_args(piper, out_dir, "--chunk-size", "4", *ids)).code == 0
    land(open_load(out_dir, format="both", now=T0 + timedelta(hours=1)), [("s2", "agent-b")], [("c4", "sc1")],
         T0 + timedelta(hours=1))
    assert cli(*load_args(piper, out_dir, "--refetch", *ids[:5])).code == 0


@pytest.mark.parametrize("keep_superseded", [False, True])
def test_every_table_reads_the_same_before_and_after_compaction(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, keep_superseded: bool
) -> None:
    settle(out_dir, auto=False, keep_superseded=keep_superseded)
    land_history(piper, out_dir, cli)
    before = contents(out_dir)
    assert_every_table_equals_duckdb(out_dir)
    files_before = len(files_under(out_dir))

    done = compact.compact(out_dir)

    assert done.loads == 5 and done.files_now < files_before
    assert contents(out_dir) == before
    assert_every_table_equals_duckdb(out_dir)
    superseded = compacted_rows(out_dir, "runs") - len(before["runs"])
    assert (superseded > 0) if keep_superseded else (superseded == 0), "what compaction keeps of replaced runs"
    assert compacted_rows(out_dir, "fetch_log") == len(before["fetch_log"]), "fetch_log keeps every row"
    # Later loads on top of the compacted files, then a second compaction: still the same everywhere.
    assert cli(*load_args(piper, out_dir, "--refetch", *piper.dataset.session_ids[3:9])).code == 0
    after_load = contents(out_dir)
    assert_every_table_equals_duckdb(out_dir)
    compact.compact(out_dir)
    assert contents(out_dir) == after_load


def test_duckdb_catches_up_with_loads_compacted_before_it_existed(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids = piper.dataset.session_ids
    for batch in (ids[:8], ids[8:16], ids[4:20]):
        assert cli(*load_args(piper, out_dir, "--format", "parquet", *batch)).code == 0
    piper.dataset.complete_pending()
    assert cli(*load_args(piper, out_dir, "--format", "parquet", *ids)).code == 0
    compact.compact(out_dir)
    assert len(compacted.read_manifest(out_dir / "parquet").covered) == 4
    assert not (out_dir / "piper.duckdb").exists()
    assert cli(*load_args(piper, out_dir, *ids[:2])).code == 0
    assert_every_table_equals_duckdb(out_dir)
    assert not (out_dir / "_staging").exists() or not any((out_dir / "_staging").rglob("*.parquet"))


def test_a_live_load_is_left_for_the_next_compaction(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    settle(out_dir, auto=False)
    assert cli(*load_args(piper, out_dir, *piper.dataset.session_ids[:6])).code == 0
    live = open_load(out_dir, format="parquet", now=T0)
    land(live, [("s1", "agent-a")], [], T0)  # committed, but its lease is released only now...
    running = open_load(out_dir, format="parquet", now=T0 + timedelta(minutes=1))
    try:
        running.land("main-0001", {})
        assert compact.compact(out_dir).loads == 2
        assert running.load_id not in compacted.read_manifest(out_dir / "parquet").covered
    finally:
        running.close()  # ... while this one never commits: the next load recovers it
    assert cli(*load_args(piper, out_dir, *piper.dataset.session_ids[6:8])).code == 0
    assert compact.compact(out_dir).loads == 1
    assert_every_table_equals_duckdb(out_dir)


def test_auto_compaction_waits_for_the_threshold_and_can_be_turned_off(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    ids, root = piper.dataset.session_ids, out_dir / "parquet"
    for session_id in ids[:2 * compact.AUTO_AFTER_LOADS]:
        assert cli(*load_args(piper, out_dir, "--format", "parquet", session_id)).code == 0
        layout = views.read_layout(root)
        assert len(layout.pending_loads) < compact.AUTO_AFTER_LOADS
        assert sum(len(paths) for paths in layout.pending.values()) < compact.AUTO_AFTER_FILES
    assert compacted.read_manifest(root).generation >= 2
    assert cli("compact", "--out", str(out_dir), "--auto", "off").code == 0
    generation = compacted.read_manifest(root).generation
    for session_id in ids[10:10 + compact.AUTO_AFTER_LOADS + 1]:
        assert cli(*load_args(piper, out_dir, "--format", "parquet", session_id)).code == 0
    assert compacted.read_manifest(root).generation == generation
    assert len(views.read_layout(root).pending_loads) == compact.AUTO_AFTER_LOADS + 1


def test_compact_command(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    nothing = cli("compact", "--out", str(out_dir))
    assert nothing.code == 2
    assert "nothing to compact in" in nothing.stderr and "run piper-etl load" in nothing.stderr
    assert cli(*load_args(piper, out_dir, *piper.dataset.session_ids[:5])).code == 0
    before = contents(out_dir)
    done = cli("compact", "--out", str(out_dir), "--grace-seconds", "0", "--keep-superseded", "on")
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("compaction 1: 1 load(s) compacted")
    assert "auto on, keep superseded on, grace 0 s" in done.stderr
    assert contents(out_dir) == before
    assert not list((out_dir / "parquet" / "runs").glob("*.parquet")), "replaced parts deleted after 0 s"
    assert cli("compact", "--out", str(out_dir), "--grace-seconds", "-1").code == 2
