"""Compaction of a landing on an object store (`--out s3://bucket/prefix`, moto on loopback): the promises
of a local folder's (tests/test_compact*.py) hold there too.

The object count stays bounded however many loads land; the current state equals a local landing's
with the same loads; a reader holding views opened before a compaction reads them throughout; a
compaction killed at any step leaves the state as it was and the next one converges; DuckDB catches
up with loads a compaction covers, from the store.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from connector.fake_api import FakeDataset
from schemas.tables import LANDED_TABLES
from tests.conftest import Cli, SimulatedPiper
from tests.dask_support import VARYING
from tests.object_store_support import CANARY_KEY_ID, CANARY_SECRET, S3Server, database_tables, parquet_tables, s3
from tests.test_compact import land_sessions as land_through_load
from tests.test_compact import settle
from tests.test_crash_recovery import run_cli_process
from warehouse import compact, compacted, landing, objstore, views
from warehouse.crash import CRASH_EXIT_STATUS
from warehouse.load import OutputFormat

__all__ = ["s3"]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    return tmp_path / "xdg-state"


def store_root(url: str) -> objstore.ObjectPath:
    return objstore.ObjectPath(url) / landing.PARQUET_DIR


def settle_store(url: str, state: Path, **settings: object) -> None:
    compact.change_settings(state, compacted.Settings(**settings), root=store_root(url))  # type: ignore[arg-type]


def land_sessions(state: Path, url: str | None, dataset: FakeDataset, session_ids: list[str], *, now: datetime,
                  format: OutputFormat = "parquet", database: Path | None = None) -> None:
    """One load of these sessions through the real load transaction (no HTTP), into `url` with the local
    state folder `state`, or into the local folder `state` when `url` is None; its commit compacts past the line."""
    land_through_load(state, dataset, session_ids, format=format, now=now, landing_url=url, database=database)


def objects_per_folder(s3: S3Server, url: str) -> Counter[str]:
    """How many objects lie in each folder under `url/parquet` (`runs`, `_compacted/runs`, ...)."""
    prefix = url.removeprefix(f"s3://{s3.bucket}/") + "/parquet/"
    return Counter(key.removeprefix(prefix).rsplit("/", 1)[0] for key in s3.objects(url) if key.startswith(prefix))


def read_state(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    """Every landed table (as `tables_of` compares them) and the `loads` ids, read through `con` (left open)."""
    tables: dict[str, list[tuple[object, ...]]] = {}
    for table in LANDED_TABLES:
        columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall() if row[0] not in VARYING]
        tables[table] = sorted(con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall(), key=repr)
    tables["loads"] = sorted(con.execute("SELECT load_id FROM loads").fetchall())
    return tables


def state_of(url: str) -> dict[str, list[tuple[object, ...]]]:
    """`read_state` of the views over the store, opened now."""
    con = views.open_current_state(f"{url}/parquet")
    try:
        return read_state(con)
    finally:
        con.close()


def sql_file_state(s3: S3Server, url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every table through the store's `current_state.sql` itself, its `s3://` files read through fsspec."""
    text = s3.objects(url)[url.removeprefix(f"s3://{s3.bucket}/") + "/current_state.sql"].decode()
    con = duckdb.connect()
    try:
        objstore.register(con, store_root(url))
        con.execute(text)
        return read_state(con)
    finally:
        con.close()


def unnamed_objects(s3: S3Server, url: str) -> list[str]:
    """Objects under `_compacted/` that the manifest names neither as current nor as retired."""
    manifest = landing.read_manifest(store_root(url))
    named = manifest.all_paths() | {r.name for r in manifest.retired_files} | {"_compacted/manifest.json"}
    prefix = url.removeprefix(f"s3://{s3.bucket}/") + "/parquet/"
    return [key for key in s3.objects(url) if key.startswith(prefix + "_compacted/")
            and key.removeprefix(prefix) not in named]


def test_many_small_loads_keep_the_object_count_bounded_and_read_as_a_local_landing(
    s3: S3Server, tmp_path: Path
) -> None:
    """28 loads of 5 sessions into a prefix and into a local folder, each compacting by itself past the
    line; half of them fetch earlier sessions again (superseded rows to drop)."""
    dataset = FakeDataset.generate(seed=7, sessions=140, payload_kb=2.0)
    ids = dataset.session_ids
    url, state, local = s3.prefix(), tmp_path / "state", tmp_path / "local"
    settle_store(url, state, grace_seconds=0)
    settle(local, grace_seconds=0)
    most: Counter[str] = Counter()
    for batch in range(28):
        if batch == 14:
            dataset.complete_pending()
        again = ids[(batch - 14) * 5:(batch - 13) * 5] if batch >= 14 else []
        sessions, now = [*ids[batch * 5:(batch + 1) * 5], *again], T0 + timedelta(minutes=batch)
        land_sessions(state, url, dataset, sessions, now=now)
        land_sessions(local, None, dataset, sessions, now=now)
        counts = objects_per_folder(s3, url)
        most = Counter({folder: max(most[folder], counts[folder]) for folder in {*most, *counts}})
    assert max(most.values()) <= compact.AUTO_AFTER_LOADS + 2, most
    assert sum(objects_per_folder(s3, url).values()) <= 60
    assert landing.read_manifest(store_root(url)).generation >= 28 // compact.AUTO_AFTER_LOADS
    remote = state_of(url)
    assert len(remote["loads"]) == 28 and len(remote["runs"]) == 140
    assert {k: v for k, v in remote.items() if k != "loads"} == parquet_tables(local / "parquet")
    assert sql_file_state(s3, url) == state_of(url)


def test_the_compact_command_on_a_prefix_and_duckdb_catching_up_from_its_compacted_objects(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, tmp_path: Path
) -> None:
    ids = piper.dataset.session_ids
    url, database = s3.prefix(), tmp_path / "db" / "piper.duckdb"
    args = ["load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url, "--database", str(database)]
    nothing = cli("compact", "--out", url, "--database", str(database))
    assert nothing.code == 2 and "nothing to compact in" in nothing.stderr, nothing.stderr
    assert cli(*args, "--format", "parquet", *ids[:10]).code == 0
    off = cli("compact", "--out", url, "--database", str(database), "--auto", "off", "--grace-seconds", "0")
    assert off.code == 0, off.stderr
    assert off.stdout.startswith("compaction 1: 1 load(s) compacted")
    assert f"settings of {url}: auto off, keep superseded off, grace 0 s" in off.stderr
    for batch in (ids[5:15], ids[:3]):
        assert cli(*args, "--format", "parquet", "--refetch", *batch).code == 0
    assert len(views.read_layout(store_root(url)).pending_loads) == 2, "auto off: the loads left their parts"
    before = state_of(url)
    done = cli("compact", "--out", url, "--database", str(database))
    assert done.code == 0 and done.stdout.startswith("compaction 2: 2 load(s) compacted"), done.stderr
    assert state_of(url) == before == sql_file_state(s3, url)
    assert objects_per_folder(s3, url)["runs"] == 0, "the covered loads' parts are gone (grace 0 s)"
    assert not database.exists()
    # A load with DuckDB catches up with the three loads the compactions covered, from the store.
    piper.dataset.complete_pending()
    assert cli(*args, "--format", "both", *ids[20:]).code == 0
    assert database_tables(database) == parquet_tables(f"{url}/parquet")
    assert not any((database.parent / landing.STAGING_DIR).rglob("*.parquet")), "the extracted parts are gone"


def test_the_compact_command_refuses_what_it_cannot_lock_or_name(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, tmp_path: Path, state_home: Path
) -> None:
    url = s3.prefix()
    assert cli("load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url,
               *piper.dataset.session_ids[:3]).code == 0
    other = cli("compact", "--out", url, "--database", str(tmp_path / "elsewhere" / "piper.duckdb"))
    assert other.code == 2 and f"no load into {url} kept its state in" in other.stderr, other.stderr
    named = cli("compact", "--out", url, "--database", str(tmp_path / "x.duckdb"))
    assert named.code == 2 and "--database must name a file called piper.duckdb" in named.stderr
    local = cli("compact", "--out", str(tmp_path / "out"), "--database", str(tmp_path / "piper.duckdb"))
    assert local.code == 2 and "--database is for an object-store output" in local.stderr
    bad = cli("compact", "--out", "s3://AKIAEXAMPLE:hunter2@bucket/prefix")
    assert bad.code == 2 and "must not carry credentials" in bad.stderr and "hunter2" not in bad.stderr
    missing = cli("compact", "--out", "s3://no-such-bucket/prefix")
    assert missing.code == 1 and "no such bucket" in missing.stderr, missing.stderr
    done = cli("compact", "--out", url)  # the state folder of loads without --database
    assert done.code == 0 and done.stdout.startswith("compaction 1: 1 load(s) compacted"), done.stderr
    for secret in (CANARY_KEY_ID, CANARY_SECRET):
        for text in (other.stdout, other.stderr, done.stdout, done.stderr, missing.stderr):
            assert secret not in text
        for path in (*state_home.rglob("*"), *tmp_path.rglob("*")):
            assert not path.is_file() or secret.encode() not in path.read_bytes(), path
        assert all(secret.encode() not in data for data in s3.objects(url).values())


def test_a_reader_holding_older_views_reads_them_until_the_grace_period_ends(
    s3: S3Server, tmp_path: Path
) -> None:
    dataset = FakeDataset.generate(seed=3, sessions=30, payload_kb=2.0)
    ids, url, state = dataset.session_ids, s3.prefix(), tmp_path / "state"
    settle_store(url, state, auto=False, grace_seconds=600)
    for index, batch in enumerate((ids[:10], ids[5:20], ids[:3])):
        land_sessions(state, url, dataset, batch, now=T0 + timedelta(minutes=index))
    before = state_of(url)
    old_sql = sql_file_state(s3, url)
    holding = views.open_current_state(f"{url}/parquet")
    try:
        done = compact.compact(state, root=store_root(url))
        assert done.loads == 3 and done.files_deleted == 0
        assert read_state(holding) == before, "views opened before it read their own files"
        assert old_sql == before == state_of(url) == sql_file_state(s3, url)
        assert objects_per_folder(s3, url)["runs"] == 3, "the covered parts stay for the grace period"
        later = compact.compact(state, root=store_root(url), now=datetime.now(UTC).timestamp() + 601)
        assert later.files_deleted > 0
        manifest = landing.read_manifest(store_root(url))
        assert manifest.retired_files == () and manifest.retired_loads == ()
        assert objects_per_folder(s3, url)["runs"] == 0 and objects_per_folder(s3, url)["loads"] == 0
    finally:
        holding.close()


def test_readers_during_loads_and_compactions_never_see_a_mixture(s3: S3Server, tmp_path: Path) -> None:
    dataset = FakeDataset.generate(seed=4, sessions=40, payload_kb=2.0)
    ids, url, state = dataset.session_ids, s3.prefix(), tmp_path / "state"
    settle_store(url, state, grace_seconds=60)
    land_sessions(state, url, dataset, ids[:2], now=T0)
    stop, problems, reads = threading.Event(), list[str](), [0]

    def read_repeatedly() -> None:
        seen_loads = 0
        while not stop.is_set():
            try:
                con = views.open_current_state(f"{url}/parquet")
                try:
                    found = con.execute(
                        "SELECT (SELECT count(*) FROM runs), (SELECT count(DISTINCT run_id) FROM runs), "
                        "(SELECT count(*) FROM loads), (SELECT count(DISTINCT load_id) FROM fetch_log)").fetchone()
                finally:
                    con.close()
            except (duckdb.Error, OSError) as exc:
                problems.append(repr(exc))
                continue
            assert found is not None
            runs, distinct, loads, logged = found
            if runs != distinct or loads != logged or loads < seen_loads:
                problems.append(f"runs {runs}/{distinct} distinct, loads {loads}, logged {logged}, seen {seen_loads}")
            seen_loads = loads
            reads[0] += 1

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    try:
        for index in range(2, 14):
            land_sessions(state, url, dataset, ids[index:index + 3], now=T0 + timedelta(minutes=index))
            if index % 4 == 0:
                compact.compact(state, root=store_root(url))
    finally:
        stop.set()
        reader.join()
    assert problems == []
    assert reads[0] > 5
    assert landing.read_manifest(store_root(url)).generation >= 3


@pytest.mark.parametrize("crash_at", ["compact-written:1", "compact-written:4", "compact-sql-written",
                                      "compact-committed", "compact-vacuum:1", "compact-vacuum:2"])
def test_a_killed_compaction_changes_nothing_and_the_next_one_converges(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, state_home: Path, crash_at: str
) -> None:
    ids, url = piper.dataset.session_ids, s3.prefix()
    args = ["load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url, "--chunk-size", "5"]
    assert cli(*args, *ids[:12]).code == 0
    assert cli("compact", "--out", url, "--auto", "off", "--grace-seconds", "0").code == 0
    piper.dataset.complete_pending()
    assert cli(*args, *ids).code == 0
    assert cli(*args, "--refetch", *ids[:4]).code == 0
    before = state_of(url)

    killed = run_cli_process(["compact", "--out", url], crash_at=crash_at)
    assert killed.returncode == CRASH_EXIT_STATUS, killed.stderr

    assert state_of(url) == before, "the views read the state as it was, from objects that exist"
    assert sql_file_state(s3, url) == before, "and so does the current_state.sql on the store"
    again = cli("compact", "--out", url)
    assert again.code == 0, again.stderr
    assert state_of(url) == before == sql_file_state(s3, url)
    assert unnamed_objects(s3, url) == [], "what the dead compaction uploaded is gone"
    assert landing.read_manifest(store_root(url)).covered == {row[0] for row in before["loads"]}
    assert objects_per_folder(s3, url)["runs"] == 0, "every covered load's parts deleted"
    assert cli(*args, "--refetch", *ids[4:8]).code == 0
    assert len(state_of(url)["loads"]) == len(before["loads"]) + 1


@pytest.mark.parametrize("crash_at", ["compact-written:2", "compact-committed"])
def test_a_load_killed_in_its_compaction_stays_committed_and_the_next_load_converges(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, tmp_path: Path, crash_at: str
) -> None:
    ids, url, database = piper.dataset.session_ids, s3.prefix(), tmp_path / "db" / "piper.duckdb"
    args = ["load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url, "--format", "both",
            "--database", str(database)]
    assert cli(*args, ids[0]).code == 0
    assert cli("compact", "--out", url, "--database", str(database), "--grace-seconds", "0").code == 0
    killed = None
    for session_id in ids[1:8]:  # one of these crosses the line and compacts
        killed = run_cli_process([*args, session_id], crash_at=crash_at)
        if killed.returncode == CRASH_EXIT_STATUS:
            break
        assert killed.returncode == 0, killed.stderr
    assert killed is not None and killed.returncode == CRASH_EXIT_STATUS, "a load compacted"
    assert database_tables(database) == parquet_tables(f"{url}/parquet"), "the killed load is committed in both"
    assert cli(*args, *ids[10:14]).code == 0
    assert database_tables(database) == parquet_tables(f"{url}/parquet")
    assert sql_file_state(s3, url) == state_of(url)
    assert unnamed_objects(s3, url) == []
