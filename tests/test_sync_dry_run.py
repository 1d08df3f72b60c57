"""`piper-etl sync --dry-run` lists and prints what would be loaded, and writes nothing, not even the folder."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Cli, SimulatedPiper, assert_no_canary
from tests.sync_support import Requests, org, sync_args, unfinished

__all__ = ["org"]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_a_dry_run_on_a_new_folder_creates_nothing(org: SimulatedPiper, cli: Cli, out_dir: Path) -> None:
    requests = Requests(org)
    result = cli(*sync_args(org, out_dir, "--dry-run"))
    assert result.code == 0, result.stderr
    assert not out_dir.exists()
    fetched, pages = requests.take()
    assert not fetched and pages == 1, "only the list is read"
    assert "dry run: listed 68 sessions in 1 pages" in result.stdout
    assert "queued 60: 60 new, 0 unfinished, 0 updated" in result.stdout and "nothing was written" in result.stdout
    assert "would fetch: " in result.stdout and "and 50 more" in result.stdout
    assert_no_canary(result.stdout, result.stderr)


def test_a_dry_run_after_a_sync_shows_the_next_queue_and_changes_no_file(
    org: SimulatedPiper, cli: Cli, out_dir: Path
) -> None:
    assert cli(*sync_args(org, out_dir)).code == 0
    org.dataset.add_session("web-dry-new")
    before = snapshot(out_dir)
    requests = Requests(org)
    requests.take()
    result = cli(*sync_args(org, out_dir, "--dry-run"))
    assert result.code == 0, result.stderr
    assert snapshot(out_dir) == before
    fetched, _ = requests.take()
    assert not fetched
    assert f"1 new, {len(unfinished(org.dataset))} unfinished, 0 updated" in result.stdout
    assert "'web-dry-new'" in result.stdout


def test_bad_bounds_are_usage_errors_before_any_request(org: SimulatedPiper, cli: Cli, out_dir: Path) -> None:
    requests = Requests(org)
    bad = cli(*sync_args(org, out_dir, "--since", "last tuesday", "--dry-run"))
    assert bad.code == 2 and "--since 'last tuesday' is not an ISO 8601 date or time" in bad.stderr
    backwards = cli(*sync_args(org, out_dir, "--since", "2026-11-02", "--until", "2026-11-01"))
    assert backwards.code == 2 and "must be before until" in backwards.stderr
    assert requests.take() == ({}, 0) and not out_dir.exists()
