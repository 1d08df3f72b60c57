"""A sync with nothing new against a newest-first list reads a page or two, whatever the number of sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.fake_api import FakeDataset, FakePiper, serve
from tests.conftest import CANARY_TOKEN, SimulatedPiper
from tests.sync_support import Requests, sync


@pytest.mark.parametrize("sessions", [100, 400])
def test_nothing_new_reads_one_page(sessions: int, tmp_path: Path) -> None:
    dataset = FakeDataset.generate(seed=5, sessions=sessions, payload_kb=0.5, runless_sessions=sessions // 10)
    state = FakePiper(dataset=dataset, token=CANARY_TOKEN)
    with serve(state) as base_url:
        piper = SimulatedPiper(state, base_url)
        requests = Requests(piper)
        first = sync(piper, tmp_path / "out", page_size=20, overlap=5)
        _, pages = requests.take()
        assert pages >= sessions // 15
        dataset.complete_pending()
        sync(piper, tmp_path / "out", page_size=20, overlap=5)  # fetches the runs that finished
        requests.take()

        quiet = sync(piper, tmp_path / "out", page_size=20, overlap=5)
        fetched, pages = requests.take()
        assert pages == 1 and not fetched and quiet.plan.queued == []
        assert quiet.state["watermark_after"] == first.state["watermark_after"]

        dataset.add_session("web-one-more")  # one new session: still the first page
        fetched, pages = (sync(piper, tmp_path / "out", page_size=20, overlap=5), requests.take())[1]
        assert pages == 1 and set(fetched) == {"web-one-more"}
