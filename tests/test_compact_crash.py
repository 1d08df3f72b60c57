"""A compaction killed at any point leaves the old state or the new one, and the next compaction or load converges."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli, SimulatedPiper, load_args
from tests.test_compact import assert_every_table_equals_duckdb, contents, settle
from tests.test_crash_recovery import run_cli_process
from warehouse import compacted, views
from warehouse.crash import CRASH_EXIT_STATUS


def named_files_exist(out_dir: Path) -> bool:
    root = out_dir / "parquet"
    layout = views.read_layout(root)
    return all((root / path).is_file() for table in layout.compacted for path in layout.paths(table))


def sql_file_contents(out_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table through `current_state.sql` itself, as a Parquet-only user reads it."""
    import duckdb

    from warehouse.ddl import ALL_TABLES

    con = duckdb.connect()
    try:
        con.execute(f"SET file_search_path = '{out_dir}'")
        con.execute((out_dir / "current_state.sql").read_text(encoding="utf-8"))
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in ALL_TABLES}
    finally:
        con.close()


def leftovers(out_dir: Path) -> list[Path]:
    """Files under `_compacted/` that the manifest does not name, and temporary files anywhere."""
    root = out_dir / "parquet"
    manifest = compacted.read_manifest(root)
    named = manifest.all_paths() | {r.name for r in manifest.retired_files}
    unnamed = [p for p in compacted.compacted_dir(root).glob("*/*") if p.relative_to(root).as_posix() not in named]
    return unnamed + [p for p in out_dir.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("crash_at", ["compact-written:1", "compact-written:4", "compact-sql-written",
                                      "compact-committed", "compact-vacuum:1", "compact-vacuum:6"])
def test_killed_compaction_converges(piper: SimulatedPiper, out_dir: Path, cli: Cli, crash_at: str) -> None:
    settle(out_dir, auto=False, grace_seconds=0)  # the compaction deletes what it replaced at once
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, "--chunk-size", "5", *ids[:12])).code == 0
    piper.dataset.complete_pending()
    assert cli(*load_args(piper, out_dir, "--chunk-size", "5", *ids)).code == 0
    assert cli(*load_args(piper, out_dir, "--refetch", *ids[:4])).code == 0
    before = contents(out_dir)

    killed = run_cli_process(["compact", "--out", str(out_dir)], crash_at=crash_at)
    assert killed.returncode == CRASH_EXIT_STATUS, killed.stderr

    # Right after the kill: the views and current_state.sql read the same state, from files that exist.
    assert named_files_exist(out_dir)
    assert contents(out_dir) == before
    assert sql_file_contents(out_dir) == before

    again = run_cli_process(["compact", "--out", str(out_dir)])
    assert again.returncode == 0, again.stderr
    assert contents(out_dir) == before == sql_file_contents(out_dir)
    assert leftovers(out_dir) == [], "what the dead compaction left is gone"
    assert compacted.read_manifest(out_dir / "parquet").covered == {row[0] for row in before["loads"]}
    assert not list((out_dir / "parquet" / "runs").glob("*.parquet")), "every covered load's parts deleted"

    assert run_cli_process(load_args(piper, out_dir, "--refetch", *ids[4:8])).returncode == 0
    assert_every_table_equals_duckdb(out_dir)


@pytest.mark.parametrize("crash_at", ["compact-written:2", "compact-committed"])
def test_a_load_killed_in_its_compaction_stays_committed_and_the_next_load_converges(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, crash_at: str
) -> None:
    settle(out_dir, grace_seconds=0)
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, ids[0])).code == 0
    assert cli(*load_args(piper, out_dir, ids[1])).code == 0
    killed = None
    for session_id in ids[2:8]:  # one of these crosses the threshold and compacts
        killed = run_cli_process(load_args(piper, out_dir, session_id), crash_at=crash_at)
        if killed.returncode == CRASH_EXIT_STATUS:
            break
        assert killed.returncode == 0, killed.stderr
    assert killed is not None and killed.returncode == CRASH_EXIT_STATUS, "a load compacted"
    assert_every_table_equals_duckdb(out_dir)  # the killed load is committed in both stores
    assert named_files_exist(out_dir)
    assert run_cli_process(load_args(piper, out_dir, *ids[10:14])).returncode == 0
    assert_every_table_equals_duckdb(out_dir)
    assert sql_file_contents(out_dir) == contents(out_dir)
