"""Helpers of the sync tests: a simulated org with runless sessions, the sync command line, request counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.fake_api import FakeDataset, FakePiper, serve
from flows.settings import LoadSettings, SyncOptions
from flows.sync import SyncSummary, run_sync
from tests.conftest import CANARY_TOKEN, SimulatedPiper


@pytest.fixture
def org() -> Iterator[SimulatedPiper]:
    """60 sessions with a scenario run and 8 without, newest first."""
    dataset = FakeDataset.generate(seed=21, sessions=60, payload_kb=2.0, runless_sessions=8)
    state = FakePiper(dataset=dataset, token=CANARY_TOKEN, retry_after="0")
    with serve(state) as base_url:
        yield SimulatedPiper(state, base_url)


def sync_args(piper: SimulatedPiper, out_dir: Path, *extra: str) -> list[str]:
    return ["sync", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", str(out_dir),
            "--engine", "local", *extra]


def sync(piper: SimulatedPiper, out_dir: Path, *, page_size: int = 500, overlap: int = 25,
         options: SyncOptions | None = None, **settings: object) -> SyncSummary:
    """One sync in this process, with a page size the command line does not offer."""
    load_settings = LoadSettings(org_id=piper.org_id, base_url=piper.base_url, out_dir=out_dir,
                                 **settings)  # type: ignore[arg-type]
    return run_sync(load_settings, options or SyncOptions(), CANARY_TOKEN, page_size=page_size, overlap=overlap)


class Requests:
    """What the simulated API was asked since the last `take`."""

    def __init__(self, piper: SimulatedPiper) -> None:
        self.piper = piper
        self.seen = 0

    def take(self) -> tuple[Counter[str], int]:
        """(by-session requests per session, list page requests) since the last call."""
        new = self.piper.state.requests[self.seen :]
        self.seen = len(self.piper.state.requests)
        fetched = Counter(r.session_id for r in new if r.session_id is not None)
        pages = sum(1 for r in new if r.raw_path.endswith("/sessions/"))
        return fetched, pages


def unfinished(dataset: FakeDataset) -> set[str]:
    return {s for s in dataset.session_ids if dataset.status_of(s) in ("pending", "running")}
