"""DuckDB files in a storage version that older DuckDB releases open (issue 13 §6, docs/bi.md).

Every DuckDB file a load creates is in the format of `duckdb_storage_version`; a database created by an
earlier piper-etl in DuckDB's newest format keeps working, and its snapshot is rewritten in the older
format. The readers are real: duckdb 1.1.3, 1.4.5 and 1.5.6, each installed from the package registry
into a virtual environment of its own, cached under the temporary folder so that reruns are fast.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from connector.fake_api import FakeDataset, FakePiper, serve
from flows.pipeline import run_load
from flows.settings import LoadSettings, SettingError, SyncOptions
from flows.sync import run_sync
from tests.conftest import Cli, SimulatedPiper, load_args
from tests.test_bi_snapshot_incremental import WHOLE_COPY, differences
from warehouse import snapshot, store
from warehouse.ddl import ALL_TABLES

READER_VERSIONS = ("1.1.3", "1.4.5", "1.5.6")
"""The DuckDB releases docs/bi.md promises: the oldest one the default suits, the 1.4 LTS line, the 1.5 line."""
READERS_HOME = Path(tempfile.gettempdir()) / "piper-etl-duckdb-readers"
UNREACHABLE = ("No matching distribution found", "Could not find a version", "Failed to establish a new connection",
               "Temporary failure in name resolution", "Network is unreachable", "Max retries exceeded")
"""What pip says when it cannot reach the package registry: the only reason to skip (never in CI)."""
TOKEN = "pat_storage_version_0000000000"

EVERY_VALUE = 'SELECT count(*), sum(length(t::VARCHAR)) FROM "{}" AS t'
"""Rows of a table or view, computing every value of every row as text (so every function of a view runs).

Counted in SQL, not fetched: an old duckdb's Python client needs pytz to hand over a TIMESTAMPTZ,
which says nothing of the file."""
# Run by an old duckdb: every table and view of each file read whole, as {file: {name: rows or error}}.
READ_EVERYTHING = """
import json, sys, duckdb
EVERY_VALUE = sys.argv.pop(1)
found = {"version": duckdb.__version__}
for path in sys.argv[1:]:
    try:
        con = duckdb.connect(path, read_only=True)
    except Exception as exc:
        found[path] = str(exc)
        continue
    objects = {}
    for (name,) in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
        try:
            objects[name] = con.execute(EVERY_VALUE.format(name.replace('"', '""'))).fetchone()[0]
        except Exception as exc:
            objects[name] = "error: " + str(exc).splitlines()[0]
    found[path] = objects
    con.close()
print(json.dumps(found))
"""


def reader_python(version: str) -> Path:
    """The Python of a virtual environment with duckdb==`version`, made once and kept under READERS_HOME."""
    home = READERS_HOME / f"duckdb-{version}"
    python = home / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if (home / "complete").exists():
        return python
    build = READERS_HOME / f".duckdb-{version}.{os.getpid()}.building"
    shutil.rmtree(build, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(build)], check=True, capture_output=True, timeout=300)
    installed = subprocess.run(
        [str(build / python.relative_to(home)), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         f"duckdb=={version}"], capture_output=True, text=True, timeout=900,
    )
    if installed.returncode != 0:
        shutil.rmtree(build, ignore_errors=True)
        said = installed.stdout + installed.stderr
        if not os.environ.get("CI") and any(marker in said for marker in UNREACHABLE):
            pytest.skip(f"pip cannot reach the package registry to install duckdb=={version}: {said.strip()[-300:]}")
        pytest.fail(f"pip install duckdb=={version} failed:\n{said}")
    (build / "complete").write_text(version, encoding="utf-8")
    shutil.rmtree(home, ignore_errors=True)  # a half-made one, from a run killed before `complete`
    try:
        build.rename(home)
    except OSError:  # another test run finished the same environment first
        shutil.rmtree(build, ignore_errors=True)
    return python


def read_with(version: str, *paths: Path) -> dict[str, object]:
    done = subprocess.run([str(reader_python(version)), "-c", READ_EVERYTHING, EVERY_VALUE, *map(str, paths)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    assert found.pop("version") == version
    return found


def rows_now(path: Path) -> dict[str, object]:
    """What READ_EVERYTHING finds in `path`, read by this process's DuckDB."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {name: con.execute(EVERY_VALUE.format(name)).fetchone()[0] for name in names}  # type: ignore[index]
    finally:
        con.close()


def storage_formats(out_dir: Path) -> dict[str, str]:
    """The storage format of every DuckDB file of an output folder, by its name under it."""
    standbys = [f"{snapshot.STANDBY_DIR}/{name}" for name in snapshot.STANDBY_FILES]
    files = [store.DATABASE_FILE, snapshot.SNAPSHOT_FILE, *standbys]
    con = duckdb.connect()
    try:
        found = {}
        for name in files:
            con.execute("ATTACH ? AS probe (READ_ONLY)", [str(out_dir / name)])
            found[name] = store.storage_format(con, "probe")
            con.execute("DETACH probe")
        return found
    finally:
        con.close()


def same_rows(out_dir: Path) -> bool:
    """Whether the snapshot has the database's tables and views with the same rows.

    Not the same view text: DuckDB stores a view parsed, and prints it back in the words of the file's
    format (`1e6` is `CAST(1000000.0 AS DOUBLE)` in v1.0.0), so a database and its snapshot in two
    formats word their views differently.
    """
    if rows_now(out_dir / store.DATABASE_FILE).keys() != rows_now(snapshot.snapshot_path(out_dir)).keys():
        return False
    return [found for found in differences(out_dir) if not found.startswith("tables or view definitions")] == []


def create_like_an_earlier_piper_etl(database: Path) -> None:
    """A piper.duckdb as piper-etl made it before this setting existed: DuckDB's own default format."""
    database.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(database))
    try:
        store.ensure_tables(con)
    finally:
        con.close()


def load_three_times(out_dir: Path, storage_version: str = store.DEFAULT_STORAGE_VERSION) -> None:
    """A load, a sync and a refetching load: two whole copies of the snapshot, then an update of a standby."""
    dataset = FakeDataset.generate(seed=13, sessions=24, payload_kb=4.0)
    with serve(FakePiper(dataset=dataset, token=TOKEN, retry_after="0")) as base_url:
        settings = LoadSettings(org_id=dataset.org_id, base_url=base_url, out_dir=out_dir,
                                duckdb_storage_version=storage_version)
        assert run_load(dataset.session_ids[:12], settings, TOKEN).ok
        assert run_sync(settings, SyncOptions(), TOKEN).ok
        dataset.complete_pending()
        assert run_load(dataset.session_ids[:6], dataclasses.replace(settings, refetch=True), TOKEN).ok


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two output folders after three loads: one new, one whose piper.duckdb an earlier piper-etl created."""
    root = tmp_path_factory.mktemp("storage")
    new, legacy = root / "new", root / "legacy"
    load_three_times(new)
    create_like_an_earlier_piper_etl(legacy / store.DATABASE_FILE)
    load_three_times(legacy)
    yield {"new": new, "legacy": legacy}


OLD = store.storage_format_of(store.DEFAULT_STORAGE_VERSION)
NEWEST = store.storage_format_of("latest")


def test_the_default_is_a_format_older_than_duckdbs_own() -> None:
    assert (OLD, store.storage_format_of("v1.1.3")) == ("v1.0.0+", "v1.0.0+")
    assert NEWEST != OLD


def test_every_duckdb_file_a_load_creates_is_in_the_configured_format(folders: dict[str, Path]) -> None:
    assert storage_formats(folders["new"]) == dict.fromkeys(storage_formats(folders["new"]), OLD)
    assert differences(folders["new"]) == []


def test_a_database_an_earlier_piper_etl_created_keeps_working_and_its_snapshot_is_rewritten(
    folders: dict[str, Path],
) -> None:
    formats = storage_formats(folders["legacy"])
    assert formats.pop(store.DATABASE_FILE) == NEWEST, "DuckDB cannot lower an existing file: it keeps its format"
    assert set(formats.values()) == {OLD}, formats
    assert same_rows(folders["legacy"]), "the rewritten snapshot holds every row of every table and view"
    assert rows_now(folders["legacy"] / store.DATABASE_FILE) == rows_now(folders["new"] / store.DATABASE_FILE)


@pytest.mark.parametrize("version", READER_VERSIONS)
def test_older_duckdb_releases_read_every_table_and_view(version: str, folders: dict[str, Path]) -> None:
    files = [folders["new"] / snapshot.SNAPSHOT_FILE, folders["new"] / store.DATABASE_FILE,
             folders["legacy"] / snapshot.SNAPSHOT_FILE]
    found = read_with(version, *files)
    for path in files:
        expected = rows_now(path)
        assert set(ALL_TABLES) < expected.keys() and expected["runs"] and expected["scenario_summary"], "tables, views"
        assert found[str(path)] == expected, f"duckdb {version} reading {path}"


def test_another_storage_version_rebuilds_the_standbys_but_keeps_the_database(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    ids = piper.dataset.session_ids
    for sessions in (ids[:10], ids[10:20]):
        assert cli(*load_args(piper, out_dir, *sessions)).code == 0
    caplog.clear()
    left = (".a.duckdb.0123abcd.tmp", ".a.duckdb.0123abcd.tmp.wal")
    killed = [out_dir / snapshot.STANDBY_DIR / name for name in left]
    for path in killed:  # what a publish killed in the middle of a rewrite leaves
        path.write_bytes(b"left by a kill")
    for sessions in (ids[20:25], ids[25:]):
        assert cli(*load_args(piper, out_dir, "--duckdb-storage-version", "v1.4.0", *sessions)).code == 0
    rebuilt = [r.getMessage() for r in caplog.records if WHOLE_COPY in r.getMessage()]
    assert len(rebuilt) == 2 and all("storage format v1.0.0+, not v1.4.0+" in line for line in rebuilt), rebuilt
    assert not any(path.exists() for path in killed)
    formats = storage_formats(out_dir)
    assert formats.pop(store.DATABASE_FILE) == OLD
    assert set(formats.values()) == {"v1.4.0+"}
    assert differences(out_dir) == []
    caplog.clear()
    assert cli(*load_args(piper, out_dir, "--duckdb-storage-version", "v1.4.0", "--refetch", *ids[:3])).code == 0
    assert not [r for r in caplog.records if WHOLE_COPY in r.getMessage()], "the standby in that format is updated"
    assert differences(out_dir) == []


def test_a_version_duckdb_does_not_know_is_a_usage_error(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    result = cli(*load_args(piper, out_dir, "--duckdb-storage-version", "v1.1.33", piper.dataset.session_ids[0]))
    assert result.code == 2
    assert "--duckdb-storage-version must be a DuckDB release whose storage format" in result.stderr
    assert "v1.1.3, " in result.stderr and "latest" in result.stderr and "not 'v1.1.33'" in result.stderr
    assert not out_dir.exists(), "nothing is written"
    with pytest.raises(SettingError, match=r"^duckdb_storage_version must be a DuckDB release") as raised:
        LoadSettings.resolve({"org_id": "o", "duckdb_storage_version": "v2"}, {})
    assert raised.value.setting == "duckdb_storage_version"


CONVERSION_SQL = ("ATTACH 'piper.duckdb' AS old (READ_ONLY); ATTACH 'piper-converted.duckdb' AS new "
                  "(STORAGE_VERSION 'v1.1.3'); COPY FROM DATABASE old TO new;")
"""How docs/bi.md converts an existing piper.duckdb, run from the output folder while no load runs."""


def test_the_documented_conversion_of_an_existing_database_works(tmp_path: Path) -> None:
    assert CONVERSION_SQL in (Path(__file__).parents[1] / "docs" / "bi.md").read_text(encoding="utf-8")
    out_dir = tmp_path / "out"
    create_like_an_earlier_piper_etl(out_dir / store.DATABASE_FILE)
    load_three_times(out_dir)
    before = rows_now(out_dir / store.DATABASE_FILE)
    # from the output folder, as docs/bi.md runs it with the DuckDB CLI
    subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect().execute({CONVERSION_SQL!r})"],
                   cwd=out_dir, check=True, timeout=120)
    os.replace(out_dir / "piper-converted.duckdb", out_dir / store.DATABASE_FILE)
    assert rows_now(out_dir / store.DATABASE_FILE) == before
    load_three_times(out_dir)  # loads go on in the converted file
    assert set(storage_formats(out_dir).values()) == {OLD}
    assert same_rows(out_dir)
