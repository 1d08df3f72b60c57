"""The landing's I/O seam (`warehouse/objstore.py`): the same parts, rule and views on an fsspec file system.

Run on fsspec's in-memory file system (`memory://`), in this process: what the object-store code does
with the objects, apart from any server (`tests/test_object_store_load.py` runs an S3 server).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from flows.chunks import log_row, log_table
from warehouse import landing, objstore, recovery, streams, views
from warehouse.load import open_load
from warehouse.objstore import ObjectPath
from warehouse.records import LoadCounts


@pytest.fixture
def store() -> ObjectPath:
    return ObjectPath(f"memory://bucket/{uuid.uuid4().hex}")


def chunk(load_id: str, sessions: list[str]) -> dict[str, pa.Table]:
    """A chunk of `loaded` sessions: its `fetch_log` part (what marks a chunk complete)."""
    now = datetime.now(UTC)
    return {"fetch_log": log_table([log_row(load_id, s, "loaded", fetched_at=now, run_id=f"run-{s}")
                                    for s in sessions])}


def test_urls_are_told_from_paths_and_bad_ones_are_clear_errors() -> None:
    assert objstore.is_url("s3://bucket/prefix") and objstore.is_url("memory://b/x")
    assert not objstore.is_url("/data/out") and not objstore.is_url("out") and not objstore.is_url("file:///x")
    assert isinstance(objstore.landing_root("/data/out/parquet"), Path)
    assert objstore.landing_root("memory://b/x/parquet") == ObjectPath("memory://b/x/parquet")
    with pytest.raises(objstore.ObjectStoreError, match="names no bucket"):
        objstore.filesystem("s3://")
    with pytest.raises(objstore.ObjectStoreError, match="must not carry credentials"):
        objstore.filesystem("s3://AKIA:secret@bucket/prefix")
    with pytest.raises(objstore.ObjectStoreError, match="cannot use nosuchscheme:// URLs"):
        objstore.filesystem("nosuchscheme://bucket/prefix")


def test_an_object_path_lists_globs_reads_and_deletes(store: ObjectPath) -> None:
    folder = store / "runs"
    assert folder.names() == [] and not folder.is_dir() and not (folder / "a.parquet").exists()
    objstore.write_text(folder / "a.parquet", "x")
    objstore.write_text(folder / "b.txt", "y")
    assert sorted(folder.names()) == ["a.parquet", "b.txt"] and folder.is_dir()
    assert [p.name for p in store.glob("*/*.parquet")] == ["a.parquet"]
    assert (folder / "b.txt").read_text() == "y"
    (folder / "b.txt").unlink()
    (folder / "b.txt").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        (folder / "b.txt").unlink()
    assert folder.names() == ["a.parquet"]


def test_a_chunk_lands_on_the_store_and_only_a_committed_load_is_read(store: ObjectPath) -> None:
    root = store / landing.PARQUET_DIR
    landing.write_chunk(root, "L1", "main-0001", chunk("L1", ["s1", "s2"]))
    assert [p.name for p in landing.load_parts(root, "L1", "fetch_log")] == ["L1.main-0001.parquet"]
    assert views.read_layout(root).pending_loads == frozenset(), "no `loads` row: the load is invisible"
    recovery._commit_landed(root, "L1", 7, None)  # as a dead load's recovery: its complete chunks committed
    layout = views.read_layout(root)
    assert layout.pending_loads == {"L1"}
    assert layout.paths("fetch_log") == ["fetch_log/L1.main-0001.parquet"]
    con = views.open_current_state(root.as_posix())
    try:
        assert con.execute("SELECT session_id FROM fetch_log ORDER BY 1").fetchall() == [("s1",), ("s2",)]
        assert con.execute("SELECT status, load_seq FROM loads").fetchall() == [("recovered", 7)]
    finally:
        con.close()


def test_an_incomplete_chunk_is_removed_from_the_store_and_a_stream_resumes(store: ObjectPath) -> None:
    root = store / landing.PARQUET_DIR
    landing.write_chunk(root, "L2", "task-0001-0001", chunk("L2", ["s1"]))
    tables = chunk("L2", ["s2"])  # a data part of a chunk whose fetch_log part never landed:
    landing.write_part(tables["fetch_log"], landing.part_path(root, "runs", "L2", "task-0001-0002"))
    resumed = streams.resume_stream(root, "L2", "task-0001")
    assert resumed.session_ids == {"s1"} and resumed.next_stream == "task-0001-r2"
    assert [c.outcomes["loaded"] for c in resumed.chunks] == [1]
    assert landing.load_parts(root, "L2", "runs") == []


def test_a_parquet_load_into_the_store_commits_with_its_loads_row_last(store: ObjectPath, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with open_load(state, format="parquet", landing_url=store.url) as load:
        assert load.root == store / landing.PARQUET_DIR
        assert load.target.landing_root == f"{store.url}/parquet"
        load.land("main-0001", chunk(load.load_id, ["s1"]))
        assert landing.committed_load_ids(load.root) == set()
        load.commit("succeeded", LoadCounts(), {})
    root = store / landing.PARQUET_DIR
    assert landing.committed_load_ids(root) == {load.load_id}
    sql = (store / views.CURRENT_STATE_FILE).read_text()
    assert f"'{store.url}/parquet/fetch_log/{load.load_id}.main-0001.parquet'" in sql
    assert not (state / landing.PARQUET_DIR).exists(), "nothing of the landing is written locally"
    assert sorted(p.name for p in (state / "_loads").iterdir()) == [".lock", "sequence"]
    fs = fsspec.filesystem("memory")
    assert not [key for key in fs.find(store.url) if key.endswith(".tmp")]


def test_the_state_folder_follows_the_xdg_rule_and_names_the_url() -> None:
    home = {"HOME": "/home/ada"}
    assert objstore.state_folder("s3://b/p/", home) == Path("/home/ada/.local/state/piper-etl/s3_b_p")
    assert objstore.state_folder("s3://b/p", {**home, "XDG_STATE_HOME": "/state"}) == Path("/state/piper-etl/s3_b_p")
    relative = {**home, "XDG_STATE_HOME": "state"}  # a relative XDG_STATE_HOME is ignored
    assert objstore.state_folder("s3://b/p", relative) == Path("/home/ada/.local/state/piper-etl/s3_b_p")
