"""`report`, `sql`, `check` and `sync --dry-run` given an object-store `--out` (or PIPER_OUT_DIR): they read the
store's committed Parquet files through fsspec, as `views.open_current_state(url)` does, and write nothing there.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from schemas.tables import FINAL_STATUSES
from tests.conftest import Cli, SimulatedPiper
from tests.object_store_support import S3Server, s3
from tests.test_object_store_secrets import assert_nowhere

__all__ = ["s3"]


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    return tmp_path / "xdg-state"


def loaded(piper: SimulatedPiper, cli: Cli, url: str, *extra: str) -> None:
    done = cli("load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url, *extra,
               *piper.dataset.session_ids)
    assert done.code == 0, done.stderr


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_sql_and_report_read_the_store_and_match_a_local_folder(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, state_home: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, local = s3.prefix(), tmp_path / "local"
    loaded(piper, cli, url)
    loaded(piper, cli, str(local), "--format", "parquet")
    before = s3.objects(url)
    query = "SELECT scenario_name, runs, run_pass_rate FROM scenario_summary ORDER BY scenario_name"
    remote = cli("sql", "--out", url, "--csv", query)
    assert remote.code == 0, remote.stderr
    assert f"reading {url}/parquet (current state of the Parquet files)" in remote.stderr
    assert rows(remote.stdout) == rows(cli("sql", "--out", str(local), "--csv", query).stdout)
    assert rows(remote.stdout), "the simulated org has scenario runs"

    monkeypatch.setenv("PIPER_OUT_DIR", url)  # the default --out, kept whole (a Path would fold its //)
    counted = cli("sql", "--csv", "SELECT count(*) AS n FROM runs")
    assert counted.code == 0, counted.stderr
    assert rows(counted.stdout) == [{"n": str(len(piper.dataset.session_ids))}]

    monkeypatch.chdir(tmp_path)
    report = cli("report", "--out", url)
    assert report.code == 0, report.stderr
    assert (tmp_path / "report.html").stat().st_size > 0, "without --html, ./report.html (the store is not a folder)"
    assert s3.objects(url) == before, "readers write nothing on the store"
    assert_nowhere(remote.stdout, remote.stderr, report.stdout, report.stderr, folders=(tmp_path,))


def test_check_reads_the_store_as_it_reads_a_local_folder(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, state_home: Path, tmp_path: Path
) -> None:
    url, local = s3.prefix(), tmp_path / "local"
    loaded(piper, cli, url)
    loaded(piper, cli, str(local), "--format", "parquet")
    args = ("--window", "3650d", "--baseline", "3650d", "--min-runs", "1", "--as-of", "2100-01-01", "--json")
    remote, here = cli("check", "--out", url, *args), cli("check", "--out", str(local), *args)
    assert remote.code == here.code and remote.code in (0, 1), remote.stderr
    assert json.loads(remote.stdout) == json.loads(here.stdout)
    assert f"reading {url}/parquet" in remote.stderr


def test_sync_dry_run_reads_the_watermark_on_the_store(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, state_home: Path
) -> None:
    url = s3.prefix()
    args = ["sync", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url]
    before = cli(*args, "--dry-run")
    assert before.code == 0, before.stderr
    assert "nothing was written" in before.stdout and s3.objects(url) == {}
    done = cli(*args)
    assert done.code == 0, done.stderr
    after = cli(*args, "--dry-run")
    assert after.code == 0, after.stderr
    ids = piper.dataset.session_ids
    assert f"queued {len(ids)}: {len(ids)} new" in before.stdout and "watermark none" in before.stdout
    unfinished = sum(1 for s in ids if piper.dataset.status_of(s) not in FINAL_STATUSES)
    assert unfinished and f"queued {unfinished}: 0 new, {unfinished} unfinished" in after.stdout, after.stdout
    assert "watermark none" not in after.stdout, "the dry run reads the watermark the sync left on the store"


@pytest.mark.parametrize("command", ["sql", "report", "check"])
def test_a_missing_bucket_or_an_empty_prefix_is_a_usage_error(
    cli: Cli, s3: S3Server, command: str
) -> None:
    missing = cli(command, "--out", "s3://no-such-bucket-here/prefix")
    assert missing.code == 2 and "no such bucket" in missing.stderr, missing.stderr
    empty = cli(command, "--out", s3.prefix())
    assert empty.code == 2 and "no committed Parquet loads under" in empty.stderr, empty.stderr
    bad = cli(command, "--out", "s3://")
    assert bad.code == 2 and "names no bucket" in bad.stderr, bad.stderr
