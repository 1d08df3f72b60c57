"""The watermark advances only in the commit of its load, never past a failed session, and not in a backfill."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flows.settings import SyncOptions
from tests.conftest import Cli, SimulatedPiper, query
from tests.sync_support import Requests, org, sync, sync_args

__all__ = ["org"]


def test_a_failed_session_holds_the_watermark_back_until_it_loads(org: SimulatedPiper, cli: Cli,
                                                                   out_dir: Path) -> None:
    dataset, requests = org.dataset, Requests(org)
    first = sync(org, out_dir, page_size=10, overlap=2)
    assert first.ok
    before = first.state["watermark_after"]
    for name in ("web-a", "web-b", "web-c"):
        dataset.add_session(name)
    org.state.script("web-b", "500", "500")  # web-b is older than web-c, newer than everything else
    requests.take()

    failed = cli(*sync_args(org, out_dir, "--max-retries", "1"))
    assert failed.code == 1, failed.stderr
    assert "'web-b': HTTP 500" in failed.stderr
    (watermark,) = query(out_dir, "SELECT watermark_after FROM sync_state ORDER BY started_at DESC LIMIT 1")[0]
    assert watermark == dataset.created_at("web-b") and watermark > before, "up to, not past, the failed session"
    assert query(out_dir, "SELECT count(*) FROM sessions WHERE session_id = 'web-b'")[0][0] == 0, (
        "no sessions row: the next sync queues it again"
    )
    assert query(out_dir, "SELECT status FROM sync_state ORDER BY started_at DESC LIMIT 1")[0][0] == "partial"

    requests.take()
    again = sync(org, out_dir, page_size=10, overlap=2)
    fetched, pages = requests.take()
    assert again.ok and "web-b" in fetched and again.plan.reasons["new"] == 1 and pages == 1
    assert again.state["watermark_after"] == dataset.created_at("web-c")


def test_a_backfill_keeps_the_watermark_and_loads_only_its_range(org: SimulatedPiper, out_dir: Path) -> None:
    dataset = org.dataset
    created = sorted(dataset.created_at(s).replace(microsecond=0) for s in dataset.session_ids)  # as listed
    since, until = created[10], created[20]
    backfill = sync(org, out_dir, page_size=10, overlap=2, options=SyncOptions(since=since, until=until))
    assert backfill.ok and backfill.state["watermark_after"] is None and backfill.state["watermark_before"] is None
    assert backfill.plan.reasons["new"] == 10
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 10
    full = sync(org, out_dir, page_size=10, overlap=2)
    assert full.state["watermark_after"] == created[-1] and full.plan.reasons["new"] == 50
    later = sync(org, out_dir, page_size=10, overlap=2, options=SyncOptions(since=created[-1] - timedelta(days=1)))
    assert later.state["watermark_after"] == created[-1] and later.state["watermark_before"] == created[-1]


def test_a_refused_token_holds_the_watermark_at_the_session_never_fetched(
    org: SimulatedPiper, cli: Cli, out_dir: Path
) -> None:
    assert sync(org, out_dir).ok
    org.dataset.add_session("web-late")
    org.state.script("web-late", "401")  # the token is refused mid-sync: exit 3, the load commits what it has
    refused = cli(*sync_args(org, out_dir))
    assert refused.code == 3, refused.stderr
    status, watermark = query(out_dir, "SELECT status, watermark_after FROM sync_state ORDER BY started_at")[-1]
    assert status == "aborted" and watermark == org.dataset.created_at("web-late"), "held at the session never fetched"
