"""Sessions created or deleted while a sync pages through the list are never lost (property-style over seeds)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from connector.fake_api import FakeDataset, FakePiper, serve
from tests.conftest import CANARY_TOKEN, SimulatedPiper, query
from tests.sync_support import sync


@pytest.mark.parametrize("seed", range(12))
def test_every_session_present_when_the_sync_ends_is_stored(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    order = ("newest_first", "oldest_first", "unordered")[seed % 3]
    created, deleted = rng.randint(0, 3), rng.randint(0, 3)
    if order == "unordered":  # created behind the pass: seen by a later pass or sync (tests/test_discovery.py)
        created = 0
    dataset = FakeDataset.generate(seed=100 + seed, sessions=rng.randint(40, 90), payload_kb=1.0,
                                   runless_sessions=rng.randint(0, 10))
    state = FakePiper(dataset=dataset, token=CANARY_TOKEN, list_order=order, fault_seed=seed,
                      sessions_created_per_list=created, sessions_deleted_per_list=deleted)
    out_dir = tmp_path / "out"
    with serve(state) as base_url:
        piper = SimulatedPiper(state, base_url)
        first = sync(piper, out_dir, page_size=10, overlap=3)
        state.sessions_created_per_list = state.sessions_deleted_per_list = 0
        assert first.status == "succeeded", first.line()
        stored = {row[0] for row in query(out_dir, "SELECT session_id FROM runs")}
        present = set(dataset.session_ids)  # as after the last list request: nothing changes after it
        assert present <= stored, f"{order}: {sorted(present - stored)[:3]} skipped"
        assert not set(dataset.runless_ids) & {r.session_id for r in state.requests}, "runless never fetched"
        assert first.state["pages_read"] > 3, "small pages, overlapping"

        # The next sync agrees: nothing new to fetch but the unfinished runs.
        second = sync(piper, out_dir, page_size=10, overlap=3)
        unfinished = {s for s in dataset.session_ids if dataset.status_of(s) in ("pending", "running")}
        assert second.plan.reasons["new"] == 0 and set(second.plan.queued) == unfinished
