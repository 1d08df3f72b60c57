"""`piper-etl load --out s3://bucket/prefix`: the Parquet landing on an S3 server on loopback (moto).

The same parts and the same current state as a load into a local folder; the load's state (leases,
the sequence) in a local folder; the current state read back through `views.open_current_state(url)`.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from schemas.tables import FINAL_STATUSES
from tests.conftest import Cli, SimulatedPiper, load_args
from tests.object_store_support import S3Server, database_tables, parquet_tables, s3
from tests.test_crash_recovery import run_cli_process
from warehouse import landing, objstore, views
from warehouse.crash import CRASH_EXIT_STATUS

__all__ = ["s3"]


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    return tmp_path / "xdg-state"


def test_a_parquet_load_into_s3_lands_what_a_local_load_lands(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, state_home: Path, tmp_path: Path
) -> None:
    ids = piper.dataset.session_ids
    piper.dataset.add_session("bad", status="passed")
    piper.dataset.set_payload("bad", [1, 2, 3])
    every = [*ids, "bad", "unknown-session"]
    local = cli(*load_args(piper, tmp_path / "local", "--format", "parquet", "--chunk-size", "7", *every))
    url = s3.prefix()
    remote = cli("load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url, "--chunk-size", "7",
                 *every)
    assert remote.code == local.code == 1, "the rejected payload fails both loads alike"
    assert f"written to {url} " in remote.stdout
    assert parquet_tables(f"{url}/parquet") == parquet_tables(tmp_path / "local" / "parquet")
    keys = s3.objects(url)
    prefix = url.removeprefix(f"s3://{s3.bucket}/")
    assert f"{prefix}/current_state.sql" in keys
    assert f"'{url}/parquet/" in keys[f"{prefix}/current_state.sql"].decode(), "its files named by their URLs"
    assert not any(key.endswith(".tmp") for key in keys), "a write on the store is one PUT: no temporary object"
    assert not any("piper.duckdb" in key for key in keys), "the default format there is parquet"
    state = objstore.state_folder(url, {"XDG_STATE_HOME": str(state_home)})
    assert {path.name for path in (state / "_loads").iterdir()} - {".compact.lock"} == {".lock", "sequence"}


def test_a_second_load_into_s3_skips_what_the_store_holds_final(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, state_home: Path
) -> None:
    url = s3.prefix()
    ids = piper.dataset.session_ids
    args = ["load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url]
    first = cli(*args, *ids)
    assert first.code == 0, first.stderr
    final = sum(1 for s in ids if piper.dataset.status_of(s) in FINAL_STATUSES)
    assert final
    second = cli(*args, *ids)
    assert second.code == 0, second.stderr
    assert f"{final} skipped" in second.stdout


def test_format_both_merges_the_parts_from_the_store_into_the_local_database(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, state_home: Path, tmp_path: Path
) -> None:
    ids = piper.dataset.session_ids
    local = cli(*load_args(piper, tmp_path / "local", "--chunk-size", "7", *ids))
    url, database = s3.prefix(), tmp_path / "db" / "piper.duckdb"
    args = ["load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url, "--chunk-size", "7"]
    remote = cli(*args, "--format", "both", "--database", str(database), *ids)
    assert remote.code == local.code == 0, remote.stderr
    assert database_tables(database) == database_tables(tmp_path / "local" / "piper.duckdb")
    assert parquet_tables(f"{url}/parquet") == database_tables(database)
    assert {path.name for path in (database.parent / "_loads").iterdir()} - {".compact.lock"} == {".lock", "sequence"}
    assert not state_home.exists(), "with --database, the load state is in its folder"
    piper.dataset.complete_pending()
    again = cli(*args, "--format", "both", "--database", str(database), "--refetch", *ids[:5])
    assert again.code == 0, again.stderr
    assert parquet_tables(f"{url}/parquet") == database_tables(database)


def test_a_parquet_load_into_s3_is_caught_up_by_a_later_load_with_a_database(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, tmp_path: Path
) -> None:
    ids = piper.dataset.session_ids
    url, database = s3.prefix(), tmp_path / "db" / "piper.duckdb"
    args = ["load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url, "--database", str(database)]
    assert cli(*args, "--format", "parquet", *ids[:10]).code == 0
    assert not database.exists()
    assert cli(*args, "--format", "both", *ids[10:]).code == 0
    assert parquet_tables(f"{url}/parquet") == database_tables(database)
    con = duckdb.connect(str(database), read_only=True)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT status) FROM loads").fetchall() == [(2, 1)]
    finally:
        con.close()


@pytest.mark.parametrize("crash_at", ["parquet-written:12", "fetched"])
def test_a_load_into_s3_killed_mid_way_leaves_nothing_visible_and_the_rerun_converges(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, state_home: Path, tmp_path: Path, crash_at: str
) -> None:
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, tmp_path / "reference", "--format", "parquet", "--chunk-size", "8", *ids)).code == 0
    url = s3.prefix()
    args = ["load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url, "--chunk-size", "8", *ids]
    killed = run_cli_process(args, crash_at=crash_at)  # the state folder from XDG_STATE_HOME, as here
    assert killed.returncode == CRASH_EXIT_STATUS, killed.stderr
    root = objstore.ObjectPath(f"{url}/parquet")
    assert views.read_layout(root).pending_loads == frozenset(), "a dead load's objects are not read"
    assert (root / "fetch_log").names(), "it had landed chunks"
    rerun = cli(*args)
    assert rerun.code == 0, rerun.stderr
    current, reference = parquet_tables(root.as_posix()), parquet_tables(tmp_path / "reference" / "parquet")
    for table in landing.DATA_TABLES:  # as tests/test_crash_recovery.py compares a local folder
        assert current[table] == reference[table], table
    con = views.open_current_state(root)
    try:
        statuses = sorted(row[0] for row in con.execute("SELECT status FROM loads").fetchall())
        logged = con.execute("SELECT count(DISTINCT session_id) FROM fetch_log").fetchall()
    finally:
        con.close()
    assert statuses == ["recovered", "succeeded"] and logged == [(len(ids),)]


def test_format_duckdb_stages_on_the_store_and_leaves_nothing_there_after_the_merge(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, tmp_path: Path
) -> None:
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, tmp_path / "local", "--format", "duckdb", *ids)).code == 0
    url, database = s3.prefix(), tmp_path / "db" / "piper.duckdb"
    done = cli("load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url, "--format", "duckdb",
               "--database", str(database), *ids)
    assert done.code == 0, done.stderr
    assert database_tables(database) == database_tables(tmp_path / "local" / "piper.duckdb")
    assert s3.objects(url) == {}, "the staged parts are deleted once merged, and no Parquet state is published"


def test_a_sync_into_s3_lands_the_listed_sessions_and_keeps_its_watermark_there(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, state_home: Path
) -> None:
    url = s3.prefix()
    args = ["sync", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url]
    first = cli(*args)
    assert first.code == 0, first.stderr
    root = f"{url}/parquet"
    tables = parquet_tables(root)
    con = views.open_current_state(root)
    try:
        logged = {row[0] for row in con.execute("SELECT session_id FROM fetch_log WHERE outcome = 'loaded'").fetchall()}
    finally:
        con.close()
    assert logged and logged <= set(piper.dataset.session_ids) and len(tables["runs"]) == len(logged)
    assert tables["sync_state"], "the watermark is landed on the store"
    second = cli(*args)
    assert second.code == 0, second.stderr
    assert parquet_tables(root)["runs"] == tables["runs"]


def test_piper_out_dir_may_name_the_store(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, state_home: Path, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    url = s3.prefix()
    monkeypatch.setenv("PIPER_OUT_DIR", url)  # kept whole: as a Path it would read s3:/bucket, a local folder
    monkeypatch.chdir(tmp_path)
    done = cli("load", "--org-id", piper.org_id, "--base-url", piper.base_url, *piper.dataset.session_ids[:4])
    assert done.code == 0, done.stderr
    assert f"written to {url} " in done.stdout
    assert not (tmp_path / "s3:").exists()
    assert len(parquet_tables(f"{url}/parquet")["fetch_log"]) == 4
