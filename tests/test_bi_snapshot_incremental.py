"""The BI snapshot is published by bringing a standby copy up to date with the missing loads only.

Every promise of the whole copy still holds: an open reader keeps its state, a new reader sees the new
one, the snapshot equals the database table by table and view by view, a reader holding the standby
or an older table layout forces a whole copy, and a kill in the middle of a publish loses nothing.
"""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Cli, SimulatedPiper, load_args
from tests.test_crash_recovery import run_cli_process
from tests.test_dimension_tables import land
from tests.test_run_identity import renamed_children
from warehouse import publish, snapshot, store
from warehouse.crash import CRASH_EXIT_STATUS
from warehouse.load import open_load

WHOLE_COPY = "copying the whole database"


@pytest.fixture(autouse=True)
def incremental_even_when_tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """These databases are far below `snapshot.COPY_BELOW_BYTES`: update the standby all the same."""
    monkeypatch.setenv(snapshot.COPY_BELOW_ENV, "0")
T0 = datetime(2027, 1, 1, tzinfo=UTC)

# A dashboard: opens the snapshot read-only and, for every line on stdin, prints a fingerprint of it.
READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
SQL = '''SELECT (SELECT count(*) FROM loads), (SELECT count(*) FROM runs), (SELECT sum(hash(run_id, status))
                 FROM runs), (SELECT count(*) FROM turns), (SELECT count(*) FROM criteria_results),
                (SELECT sum(runs) FROM scenario_summary), (SELECT count(*) FROM current_versions)'''
print(*con.execute(SQL).fetchone(), flush=True)
for line in sys.stdin:
    print(*con.execute(SQL).fetchone(), flush=True)
"""


def fingerprint(path: Path) -> list[str]:
    """What READER prints for `path`, from a fresh process (as a dashboard that connects now)."""
    done = subprocess.run([sys.executable, "-c", READER, str(path)], input="", capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.split()


def differences(out_dir: Path) -> list[str]:
    """Every table and view whose rows (or definition) differ between piper.duckdb and the snapshot."""
    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS db (READ_ONLY)", [str(out_dir / store.DATABASE_FILE)])
        con.execute("ATTACH ? AS bi (READ_ONLY)", [str(snapshot.snapshot_path(out_dir))])
        found: list[str] = []

        def objects(catalog: str) -> dict[str, str | None]:
            tables = con.execute("SELECT table_name, NULL FROM duckdb_tables() WHERE database_name = ?",
                                 [catalog]).fetchall()
            views = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? AND NOT internal",
                                [catalog]).fetchall()
            return dict(tables + views)

        database, published = objects("db"), objects("bi")
        if database != published:
            found.append(f"tables or view definitions differ: {sorted(set(database.items()) ^ set(published.items()))}")
        for name in sorted(database.keys() & published.keys()):
            for left, right in (("db", "bi"), ("bi", "db")):
                extra = con.execute(f'SELECT count(*) FROM (SELECT * FROM {left}."{name}" '
                                    f'EXCEPT ALL SELECT * FROM {right}."{name}")').fetchone()
                if extra and extra[0]:
                    found.append(f"{name}: {extra[0]} rows in {left} only")
        return found
    finally:
        con.close()


def whole_copies(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == snapshot.__name__ and WHOLE_COPY in r.getMessage()]
    caplog.clear()
    return lines


def start_reader(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def ask(reader: subprocess.Popen[str]) -> list[str]:
    assert reader.stdin is not None and reader.stdout is not None
    reader.stdin.write("again\n")
    reader.stdin.flush()
    return reader.stdout.readline().split()


def stop(reader: subprocess.Popen[str]) -> None:
    _, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err


def test_many_publishes_of_overlapping_loads_keep_the_snapshot_equal_to_the_database(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    data = piper.dataset
    ids = data.session_ids
    low, high = sorted(ids[:2])
    shared = data.run_for(low)
    rerun_session = ids[5]
    old_run = data.run_for(rerun_session)
    assert shared is not None and old_run is not None

    def rerun_with_a_new_id() -> None:
        rerun = renamed_children(copy.deepcopy(old_run), "rerun")
        rerun["id"] = "11111111-2222-4333-8444-555555555555"
        data.set_payload(rerun_session, rerun)

    steps = [
        ("first load", lambda: None, ids[:12], []),
        ("overlapping load with new sessions", lambda: None, ids[6:20], ["--refetch"]),
        ("pending runs completed, refetched", lambda: data.complete_pending(), ids, ["--refetch"]),
        ("one run id under a second session", lambda: data.set_payload(high, renamed_children(shared, "copy")),
         [high], ["--refetch"]),
        ("a session's run re-run under a new id, one turn fewer", rerun_with_a_new_id, [rerun_session], ["--refetch"]),
        ("a Parquet-only load merged by the next one", lambda: None, ids[20:25], ["--format", "parquet", "--refetch"]),
        ("a DuckDB-only load", lambda: None, ids[24:], ["--format", "duckdb", "--refetch"]),
    ]
    for number, (what, change, sessions, options) in enumerate(steps, 1):
        change()
        assert cli(*load_args(piper, out_dir, *options, *sessions)).code == 0, what
        if "parquet" in options:
            continue
        assert differences(out_dir) == [], what
        copies = whole_copies(caplog)
        assert (copies != []) == (number <= 2), f"{what}: {copies}"  # the two standbys are made once
    sessions_before = [("s1", "agent-a"), ("s2", "agent-a"), ("s3", "agent-a")]
    criteria = [("c1", "sc1"), ("c2", "sc1"), ("c3", "sc2")]
    for hour, (dimension_sessions, dimension_criteria) in enumerate([
        (sessions_before, criteria),
        ([("s2", "agent-b")], [("c1", "sc1"), ("c4", "sc1")]),  # s2 updated; sc1 loses c2, gains c4
        ([("s3", "agent-c"), ("s4", "agent-c")], [("c9", "sc2")]),
    ]):
        with open_load(out_dir, format="both", now=T0 + timedelta(hours=hour)) as load:
            land(load, dimension_sessions, dimension_criteria, T0 + timedelta(hours=hour))
        assert differences(out_dir) == [], f"dimension load {hour}"
        assert whole_copies(caplog) == []
    assert fingerprint(snapshot.snapshot_path(out_dir))[0] == str(len(steps) + 3)


def test_a_reader_keeps_its_state_across_publishes_and_new_readers_see_each_new_one(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    ids = piper.dataset.session_ids
    for batch in (ids[:5], ids[5:10]):  # both standbys exist from here on
        assert cli(*load_args(piper, out_dir, *batch)).code == 0
    published = snapshot.snapshot_path(out_dir)
    reader = start_reader(published)
    try:
        assert reader.stdout is not None
        held = reader.stdout.readline().split()
        assert held[:2] == ["2", "10"]
        whole_copies(caplog)
        for number, batch in enumerate((ids[10:15], ids[15:20], ids[:25]), 3):
            assert cli(*load_args(piper, out_dir, "--refetch", *batch)).code == 0
            assert ask(reader) == held, "the open reader saw another state"
            now = fingerprint(published)
            assert now[0] == str(number) and now != held, "a new reader sees the new load"
            assert differences(out_dir) == []
            copies = whole_copies(caplog)
            if number == 4:  # it would write the file the reader holds (published two loads ago): copied whole
                assert len(copies) == 1 and "a reader still has it open" in copies[0], copies
            else:
                assert copies == [], copies
        assert ask(reader) == held
    finally:
        stop(reader)


def test_a_reader_holding_the_standby_forces_a_whole_copy_that_ends_correct(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    ids = piper.dataset.session_ids
    for batch in (ids[:5], ids[5:10], ids[10:15]):
        assert cli(*load_args(piper, out_dir, *batch)).code == 0
    published = snapshot.snapshot_path(out_dir)
    standby = next(p for p in snapshot.standby_paths(out_dir) if p.stat().st_ino != published.stat().st_ino)
    whole_copies(caplog)
    reader = start_reader(standby)  # e.g. a dashboard that opened the snapshot two publishes ago
    try:
        assert reader.stdout is not None
        held = reader.stdout.readline().split()
        assert cli(*load_args(piper, out_dir, *ids[15:20])).code == 0
        copies = whole_copies(caplog)
        assert len(copies) == 1 and "a reader still has it open" in copies[0]
        assert ask(reader) == held
        assert differences(out_dir) == []
        assert published.stat().st_ino == standby.stat().st_ino, "the fresh copy took the standby's name"
    finally:
        stop(reader)
    assert cli(*load_args(piper, out_dir, *ids[20:25])).code == 0  # the other standby: updated in place
    assert whole_copies(caplog) == []
    assert differences(out_dir) == []


def test_a_reader_in_the_loads_own_process_is_seen_too(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    ids = piper.dataset.session_ids
    for batch in (ids[:5], ids[5:10]):
        assert cli(*load_args(piper, out_dir, *batch)).code == 0
    whole_copies(caplog)
    held = duckdb.connect(str(snapshot.snapshot_path(out_dir)), read_only=True)  # POSIX locks miss this one
    try:
        before = held.execute("SELECT count(*) FROM runs").fetchone()
        for batch in (ids[10:15], ids[15:20]):
            assert cli(*load_args(piper, out_dir, *batch)).code == 0
        copies = whole_copies(caplog)
        if sys.platform.startswith("linux"):
            assert len(copies) == 1 and "a reader in this process" in copies[0], copies
        assert held.execute("SELECT count(*) FROM runs").fetchone() == before
    finally:
        held.close()
    assert differences(out_dir) == []


def test_an_older_table_layout_in_the_standby_is_replaced_by_a_whole_copy(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    ids = piper.dataset.session_ids
    for batch in (ids[:5], ids[5:10]):
        assert cli(*load_args(piper, out_dir, *batch)).code == 0
    whole_copies(caplog)
    con = store.connect(out_dir / store.DATABASE_FILE)
    try:  # what a newer piper-etl does to the database: a column added to a table
        con.execute("ALTER TABLE runs ADD COLUMN added_later VARCHAR")
        publish.publish_duckdb(con, out_dir, None, T0, summarize=False)
    finally:
        con.close()
    copies = whole_copies(caplog)
    assert len(copies) == 1 and "table layout" in copies[0], copies
    assert differences(out_dir) == []


def test_the_summary_read_while_publishing_incrementally_matches_the_snapshot(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    ids = piper.dataset.session_ids
    for batch in (ids[:5], ids[5:10], ids[10:20]):
        assert cli(*load_args(piper, out_dir, *batch)).code == 0
    whole_copies(caplog)
    con = store.connect(out_dir / store.DATABASE_FILE)
    try:
        summaries = [publish.publish_duckdb(con, out_dir, None, T0, summarize=True) for _ in range(2)]
    finally:
        con.close()
    assert whole_copies(caplog) == []
    assert summaries[0] is not None and "| scenario | runs |" in summaries[0]
    assert summaries[0] == summaries[1] == publish.analytics_markdown(out_dir, prefer_snapshot=True)


@pytest.mark.parametrize("crash_at", ["snapshot-updating", "snapshot-updated", "snapshot-linked"])
def test_a_publish_killed_midway_leaves_the_snapshot_and_the_next_load_publishes(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture, crash_at: str
) -> None:
    ids = piper.dataset.session_ids
    for batch in (ids[:5], ids[5:10]):
        assert cli(*load_args(piper, out_dir, *batch)).code == 0
    published = snapshot.snapshot_path(out_dir)
    before = fingerprint(published)
    killed = run_cli_process(load_args(piper, out_dir, *ids[10:20]), crash_at=crash_at)
    assert killed.returncode == CRASH_EXIT_STATUS, killed.stderr
    assert fingerprint(published) == before, "the published snapshot is untouched"
    assert differences(out_dir) != [], "the killed load's merge is in the database, not yet in the snapshot"
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    assert cli(*load_args(piper, out_dir, *ids[20:25])).code == 0
    assert whole_copies(caplog) == [], "the standby was still usable"
    assert differences(out_dir) == []
    assert fingerprint(published)[:2] == ["4", "25"]
    assert not [p for p in out_dir.rglob("*") if p.name.endswith(".tmp")], "stale temporary files removed"
