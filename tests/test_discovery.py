"""Discovery over offset paging: nothing present is skipped while the list changes; early stops only when proved."""

from __future__ import annotations

import asyncio
import hashlib
import random
from datetime import UTC, datetime, timedelta

import pytest

from flows.discovery import Discovery, ListedPage, discover
from schemas.listing import ListedSession, listed_session

EPOCH = datetime(2026, 10, 1, tzinfo=UTC)


def session(number: int, created: datetime | None = None) -> ListedSession:
    created = created or EPOCH + timedelta(minutes=number)
    return listed_session({"id": f"s-{number:06d}", "scenario_run_status": "passed",
                           "created_at": created.isoformat(), "updated_at": created.isoformat()}, "sessions[0]")


class MovingList:
    """An in-memory sessions list in one order, changed before each page request as a live API is."""

    def __init__(self, count: int, order: str = "newest_first", *, seed: int = 0, creates: int = 0,
                 deletes: int = 0) -> None:
        self.sessions = {s.session_id: s for s in (session(n) for n in range(count))}
        self.order, self.creates, self.deletes = order, creates, deletes
        self.rng = random.Random(seed)
        self.next_number = count
        self.requests: list[tuple[int, int]] = []
        self.present_throughout = set(self.sessions)
        self.present_at_last: set[str] = set()

    def ordered(self) -> list[ListedSession]:
        items = list(self.sessions.values())
        if self.order == "unordered":
            return sorted(items, key=lambda s: hashlib.blake2b(s.session_id.encode()).digest())
        items.sort(key=lambda s: (s.created_at or EPOCH + timedelta(minutes=int(s.session_id[2:])), s.session_id))
        return items if self.order == "oldest_first" else items[::-1]

    async def __call__(self, offset: int, limit: int) -> ListedPage:
        if self.requests:  # changes happen between two requests
            for _ in range(self.rng.randint(0, self.deletes)):
                if self.sessions:
                    del self.sessions[self.rng.choice(sorted(self.sessions))]
            for _ in range(self.rng.randint(0, self.creates)):
                new = session(self.next_number)
                self.sessions[new.session_id] = new
                self.next_number += 1
        self.requests.append((offset, limit))
        self.present_throughout &= set(self.sessions)
        self.present_at_last = set(self.sessions)
        items = self.ordered()
        return ListedPage(items[offset : offset + limit], total=len(items))


def run(listing: MovingList, **kwargs: object) -> Discovery:
    return asyncio.run(discover(listing, page_size=100, overlap=10, **kwargs))  # type: ignore[arg-type]


def test_a_static_list_is_read_once_with_overlapping_pages() -> None:
    listing = MovingList(1000)
    found = run(listing)
    assert set(found.sessions) == set(listing.sessions)
    assert found.complete and found.read_to_end and found.newest_first and found.passes == 1
    assert [offset for offset, _ in listing.requests][:3] == [0, 90, 180]
    assert found.pages_read == len(listing.requests) == 12 + 1, "11 steps of 90, then the head again"


def test_newest_first_stops_once_the_order_proves_the_rest_older() -> None:
    listing = MovingList(5000)
    newest = max(s.created_at for s in listing.sessions.values() if s.created_at)
    found = run(listing, stop_before=newest - timedelta(minutes=30))
    assert found.complete and not found.read_to_end
    assert len(listing.requests) == 1, "the first page proves it (and was the head: no second look)"
    assert all(s.session_id in found.sessions for s in listing.sessions.values()
               if s.created_at and s.created_at >= newest - timedelta(minutes=30))


@pytest.mark.parametrize("order", ["oldest_first", "unordered"])
def test_another_order_is_read_to_the_end_whatever_the_watermark(order: str) -> None:
    listing = MovingList(700, order)
    found = run(listing, stop_before=EPOCH + timedelta(days=365))
    assert found.read_to_end and not found.newest_first and set(found.sessions) == set(listing.sessions)


def test_one_unknown_created_at_withdraws_the_proof() -> None:
    listing = MovingList(600)
    victim = listing.ordered()[50]
    listing.sessions[victim.session_id] = listed_session({"id": victim.session_id, "scenario_run_status": "passed",
                                                           "created_at": "yesterday"}, "sessions[50]")
    found = run(listing, stop_before=EPOCH + timedelta(minutes=590))
    assert found.read_to_end and not found.newest_first and len(found.sessions) == 600
    assert found.sessions[victim.session_id].row is None and found.sessions[victim.session_id].has_run


def test_sessions_created_at_the_head_during_the_pass_are_found_by_the_head_check() -> None:
    listing = MovingList(2000, creates=5, seed=3)
    newest = max(s.created_at for s in listing.sessions.values() if s.created_at)
    stop = newest - timedelta(minutes=400)
    found = run(listing, stop_before=stop)
    assert found.complete and not found.read_to_end
    newer = {s.session_id for s in listing.ordered() if s.created_at and s.created_at >= stop}
    assert newer <= set(found.sessions), "every session newer than the stop"
    created = {f"s-{n:06d}" for n in range(2000, listing.next_number)} & listing.present_at_last
    assert created and created <= set(found.sessions), "created while paging"
    assert len(listing.requests) <= 7


@pytest.mark.parametrize("seed", range(40))
def test_property_no_present_session_is_skipped_while_the_list_changes(seed: int) -> None:
    rng = random.Random(seed)
    order = rng.choice(["newest_first", "oldest_first", "unordered"])
    creates, deletes = rng.randint(0, 6), rng.randint(0, 6)
    if order == "unordered" and creates and deletes:  # the documented blind spot: see the next test
        creates = 0
    listing = MovingList(rng.randint(0, 900), order, seed=seed, creates=creates, deletes=deletes)
    found = run(listing)
    assert listing.present_throughout <= set(found.sessions), "a session present all along was skipped"
    if found.complete:
        assert listing.present_at_last <= set(found.sessions), (order, creates, deletes)
    else:
        assert order == "unordered" and creates, "only creations behind the pass keep a pass from completing"


@pytest.mark.parametrize("seed", range(10))
def test_property_unordered_with_creations_and_deletions_never_skips_a_session_present_all_along(seed: int) -> None:
    listing = MovingList(500, "unordered", seed=seed, creates=4, deletes=4)
    found = run(listing)
    assert listing.present_throughout <= set(found.sessions)


def test_a_list_replaced_between_every_request_is_not_proven_complete() -> None:
    class Replaced(MovingList):
        async def __call__(self, offset: int, limit: int) -> ListedPage:
            base = len(self.requests) * 10_000
            self.requests.append((offset, limit))
            return ListedPage([session(base + n) for n in range(limit)], total=limit * 10)

    found = run(Replaced(0))
    assert not found.complete and found.passes == 3


def test_unusable_items_are_counted_and_do_not_end_the_list() -> None:
    async def pages(offset: int, limit: int) -> ListedPage:
        if offset == 0:
            return ListedPage([session(n) for n in range(limit - 2)], total=150, unusable=["a", "b"])
        return ListedPage([session(n) for n in range(offset, 150)], total=150)

    found = asyncio.run(discover(pages, page_size=100, overlap=10))
    assert found.unusable_count == 2 and found.unusable == ["a", "b"] and len(found.sessions) == 150


def test_overlap_must_be_smaller_than_a_page() -> None:
    with pytest.raises(ValueError, match="overlap"):
        asyncio.run(discover(MovingList(1), page_size=10, overlap=10))
