"""How a standby catches up: several loads behind, and the guards on what it must and must not hold.

`snapshot._catch_up` inserts the missing loads' rows without deleting first, because a standby holds
no row of a load its `loads` table lacks; a standby that does (a damaged file) is replaced whole. It
reads those rows from the end of each of the database's tables, which holds them only when they are
the last loads merged; a standby lacking an older load is replaced whole too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Cli, SimulatedPiper, load_args
from tests.test_bi_snapshot_incremental import differences, whole_copies
from warehouse import snapshot, store


@pytest.fixture(autouse=True)
def incremental_even_when_tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """These databases are far below `snapshot.COPY_BELOW_BYTES`: update the standby all the same."""
    monkeypatch.setenv(snapshot.COPY_BELOW_ENV, "0")


def unpublished_standby(out_dir: Path) -> Path:
    """The standby the next publish writes: the one `piper-bi.duckdb` is not a link to."""
    published = snapshot.snapshot_path(out_dir).stat().st_ino
    (free,) = [p for p in snapshot.standby_paths(out_dir) if p.stat().st_ino != published]
    return free


def loads_of(path: Path) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return loads_of_connection(con)
    finally:
        con.close()


def test_a_standby_many_loads_behind_catches_up(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot, "TAIL_STEP", 3)  # the look back from each table's end doubles several times
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    ids = piper.dataset.session_ids
    for batch in (ids[:6], ids[4:10]):
        assert cli(*load_args(piper, out_dir, "--refetch", *batch)).code == 0
    whole_copies(caplog)  # the two standbys are made by whole copies
    for batch in (ids[8:12], ids[2:5], ids[10:14]):  # refetched sessions make old versions stale in the standby
        assert cli(*load_args(piper, out_dir, "--format", "parquet", "--refetch", *batch)).code == 0
    behind = unpublished_standby(out_dir)
    assert cli(*load_args(piper, out_dir, "--refetch", *ids[1:3], *ids[12:16])).code == 0
    assert differences(out_dir) == []
    assert whole_copies(caplog) == []
    assert loads_of(behind) == loads_of(out_dir / store.DATABASE_FILE)  # the standby written was 5 loads behind
    assert len(loads_of(out_dir / store.DATABASE_FILE)) == 6


def copies_after_damaging_the_standby(
    piper: SimulatedPiper,
    out_dir: Path,
    cli: Cli,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[duckdb.DuckDBPyConnection], None],
) -> list[str]:
    """Three loads, `damage` done to the standby the next publish writes, one more load: its whole-copy lines."""
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    ids = piper.dataset.session_ids
    for batch in (ids[:4], ids[4:8], ids[8:12]):
        assert cli(*load_args(piper, out_dir, *batch)).code == 0
    whole_copies(caplog)
    con = duckdb.connect(str(unpublished_standby(out_dir)))
    try:
        damage(con)
    finally:
        con.close()
    assert cli(*load_args(piper, out_dir, *ids[12:16])).code == 0
    return whole_copies(caplog)


def test_a_standby_holding_rows_of_a_load_it_does_not_list_is_replaced_whole(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    def forget_the_newest_load(con: duckdb.DuckDBPyConnection) -> None:
        # its rows of its newest load stay, the load's `loads` row goes: inserting again would duplicate them
        newest = con.execute("SELECT load_id FROM loads ORDER BY load_seq DESC, load_id DESC LIMIT 1").fetchone()
        assert newest is not None
        con.execute("DELETE FROM loads WHERE load_id = ?", [newest[0]])
        assert con.execute("SELECT count(*) FROM runs WHERE _load_id = ?", [newest[0]]).fetchone() == (4,)

    copies = copies_after_damaging_the_standby(piper, out_dir, cli, caplog, forget_the_newest_load)
    assert len(copies) == 1 and "rows of loads its loads table does not name" in copies[0], copies
    assert differences(out_dir) == []


def test_a_standby_lacking_a_load_before_others_it_holds_is_replaced_whole(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    def drop_the_oldest_load(con: duckdb.DuckDBPyConnection) -> None:
        # the oldest load goes, rows and all: its rows are not at the end of the database's tables
        oldest = con.execute("SELECT load_id FROM loads ORDER BY load_seq LIMIT 1").fetchone()
        assert oldest is not None and len(loads_of_connection(con)) == 2
        for table, column in snapshot._LOAD_COLUMN.items():
            con.execute(f"DELETE FROM {table} WHERE {column} = ?", [oldest[0]])

    copies = copies_after_damaging_the_standby(piper, out_dir, cli, caplog, drop_the_oldest_load)
    assert len(copies) == 1 and "not the last ones the database merged" in copies[0], copies
    assert differences(out_dir) == []


def loads_of_connection(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("SELECT load_id FROM loads").fetchall()}
