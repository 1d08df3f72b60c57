"""A fetch task that runs again (its Dask worker died) keeps its complete chunks and fetches only the rest."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from pathlib import Path

import pytest

from flows.settings import LoadSettings
from tests.conftest import SimulatedPiper
from warehouse import landing
from warehouse.load import LoadTarget, open_load
from warehouse.streams import resume_stream, stream_of_attempt


def first_attempt(piper: SimulatedPiper, out_dir: Path, session_ids: list[str]) -> tuple[LoadSettings, LoadTarget]:
    """What a killed first attempt of `task-0001` leaves: complete chunks, one incomplete chunk, a temporary file."""
    from flows.prefect_flow import fetch_stream

    settings = LoadSettings(org_id=piper.org_id, base_url=piper.base_url, out_dir=out_dir, chunk_size=2)
    load = open_load(out_dir, format="parquet")
    root, load_id = Path(load.target.landing_root), load.load_id
    asyncio.run(fetch_stream(session_ids, settings, load.target, "task-0001", None))
    runs = landing.part_path(root, "runs", load_id, "task-0001-0001")
    shutil.copy(runs, landing.part_path(root, "runs", load_id, "task-0001-0009"))  # no fetch_log part: incomplete
    (root / "turns" / f".{load_id}.task-0001-0010.parquet.{load_id}.0badc0de.tmp").write_bytes(b"half a file")
    (root / "runs" / f"{load_id}.task-0002-0001.parquet").write_bytes(b"another task's, untouched")
    load.close()  # the files stay for the test (a live load's would stay for its commit)
    return settings, load.target


def test_resume_keeps_complete_chunks_and_removes_what_the_dead_attempt_left_half_written(
    piper: SimulatedPiper, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPER_API_TOKEN", piper.state.token)
    ids = piper.dataset.session_ids[:4]
    _, target = first_attempt(piper, out_dir, ids)
    root, load_id = Path(target.landing_root), target.load_id
    landed = resume_stream(root, load_id, "task-0001")
    assert landed.session_ids == frozenset(ids)
    assert [chunk.part for chunk in landed.chunks] == ["task-0001-0001", "task-0001-0002"]
    assert sum((chunk.outcomes for chunk in landed.chunks), Counter()) == Counter({"loaded": 4})
    assert sum(chunk.rows["runs"] for chunk in landed.chunks) == 4
    assert landed.next_stream == "task-0001-r2"
    assert not landing.part_path(root, "runs", load_id, "task-0001-0009").exists()
    assert not list(root.rglob("*.tmp"))
    assert landing.part_path(root, "runs", load_id, "task-0002-0001").exists(), "only its own stream is touched"
    assert resume_stream(root, load_id, "task-0003") == type(landed)(next_stream="task-0003")


def test_stream_names_of_later_attempts_share_the_tasks_prefix() -> None:
    assert [stream_of_attempt("task-0007", n) for n in (1, 2, 3)] == ["task-0007", "task-0007-r2", "task-0007-r3"]


def test_a_task_run_again_fetches_only_what_its_first_attempt_did_not_land(
    prefect_harness: None, token_env: None, piper: SimulatedPiper, out_dir: Path
) -> None:
    from prefect import flow

    from flows import scale
    from flows.chunks import ChunkReport
    from flows.prefect_flow import fetch_and_land

    ids = piper.dataset.session_ids[:8]
    settings, target = first_attempt(piper, out_dir, ids[:4])
    root, load_id = Path(target.landing_root), target.load_id
    name = scale.budget_name(piper.org_id)
    asyncio.run(scale.set_budget(name, 4))

    @flow
    async def run_again() -> list[ChunkReport]:  # as the flow would: the task, with its share of the budget
        return await fetch_and_land(ids, settings, target, "task-0001", None, scale.ApiBudget(name, 2))

    reports = asyncio.run(run_again())
    hits = piper.state.session_hits
    assert [hits[s] for s in ids] == [1] * 8, "the first attempt's sessions are not fetched again"
    assert sum((report.outcomes for report in reports), Counter()) == Counter({"loaded": 8})
    assert sorted(report.part for report in reports) == [
        "task-0001-0001", "task-0001-0002", "task-0001-r2-0001", "task-0001-r2-0002"]
    assert not landing.part_path(root, "runs", load_id, "task-0001-0009").exists()
    assert not list(root.rglob("*.tmp"))
