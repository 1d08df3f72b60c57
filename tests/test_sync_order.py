"""The order knob: only a list observed newest first lets a sync stop early; any other order is read in full."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SimulatedPiper, query
from tests.sync_support import Requests, org, sync

__all__ = ["org"]


@pytest.mark.parametrize(("order", "stops_early"), [("newest_first", True), ("oldest_first", False),
                                                     ("unordered", False)])
def test_only_a_newest_first_list_is_read_partly(
    org: SimulatedPiper, out_dir: Path, order: str, stops_early: bool
) -> None:
    org.state.list_order = order  # type: ignore[assignment]
    requests = Requests(org)
    first = sync(org, out_dir, page_size=10, overlap=2)
    _, pages = requests.take()
    assert first.state["full_scan"] and pages == first.state["pages_read"] >= 9, "no watermark yet: all of it"
    assert first.plan.discovery.newest_first is (order == "newest_first")

    second = sync(org, out_dir, page_size=10, overlap=2)
    _, pages = requests.take()
    assert second.state["full_scan"] is (not stops_early)
    if stops_early:
        assert pages == 1, "the first page proves the rest older than the watermark"
    else:
        assert pages >= 9
    assert second.plan.reasons["new"] == 0
    assert query(out_dir, "SELECT count(*) FROM sync_state WHERE full_scan")[0][0] == (1 if stops_early else 2)


def test_full_scan_reads_everything_even_newest_first(org: SimulatedPiper, out_dir: Path) -> None:
    from flows.settings import SyncOptions

    sync(org, out_dir, page_size=10, overlap=2)
    again = sync(org, out_dir, page_size=10, overlap=2, options=SyncOptions(full_scan=True))
    assert again.state["full_scan"] and again.state["pages_read"] >= 9
