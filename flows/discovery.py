"""Discovery: read the whole sessions list over offset paging while it changes, or as much as provably matters.

The API pages the list by `limit` and `offset` only, documents no order, and the list changes between
two page requests (sessions are created and deleted), which shifts every later item: plain offset
paging would then skip or repeat sessions. So a pass reads pages that overlap by `overlap` items,
and each page must *connect*: hold at least one id this pass has already accepted. The items after
the last such id in the page are the ones that follow it in the list now, so whatever shifted,
nothing between it and them is missed. A page that does not connect (the sessions around the
offset were deleted, or many were created before it) is read again further back, up to
`MAX_BACKSTEPS` pages, then the pass starts over from offset 0 (at most `max_passes` passes).

Invariant: every session present in the list from a pass's first page request to its last (whatever
was created or deleted around it) is seen by that pass, provided every page connects.

The ends of the list:
* Sessions created during a pass land at the head of a newest-first list, before the offsets already
  read: after a pass of more than one page over a list observed newest first, the head is read again,
  on until a page holds a session the pass saw, and again while that took more than one request
  (sessions created during it are at the head once more). A list of another order is not re-read at
  its head: what it creates goes elsewhere.
* A pass that read to the end checks the last page's `total`: a list holding more sessions than the
  pass saw missed some (created behind the pass in a list of another order), and the pass is read
  again. Deletions and creations that cancel out between two requests cannot be seen this way; an
  unordered list is read in full by every sync, so the next one finds such a session.

Stopping early: only when the order observed so far proves the rest is older than `stop_before`:
every `created_at` read, in list order, is known and never increases, and the last one read is
older than `stop_before`. Anything else (an unknown timestamp, one step up) reads to the end.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from schemas.listing import ListedSession

logger = logging.getLogger(__name__)

PAGE_SIZE = 500
"""Items per list request: the most the API serves (docs/piper-api.md)."""
OVERLAP = 25
"""Items each page shares with the one before it: the shift (sessions created before the offset) it absorbs
without a re-read."""
MAX_BACKSTEPS = 3
"""Pages read further back to reconnect a page before the pass starts over."""
MAX_HEAD_CHECKS = 5
"""Readings of the head after a pass: again while the last one took more than one request."""
MAX_PASSES = 3
"""Passes over the list before discovery gives up proving it complete (the sync then keeps its watermark)."""


@dataclass(frozen=True)
class ListedPage:
    """One page as discovery needs it: the usable sessions, the API's `total`, and the items it could not use."""

    sessions: list[ListedSession]
    total: int | None
    unusable: list[str] = field(default_factory=list)  # why each unusable item was left out

    @property
    def size(self) -> int:
        """Items the API returned (usable or not): what tells a short page, the end of the list."""
        return len(self.sessions) + len(self.unusable)


PageFetch = Callable[[int, int], Awaitable[ListedPage]]
"""Reads one page: `(offset, limit) -> ListedPage`."""


@dataclass
class Discovery:
    """What discovery found: every session seen (the latest view of each), and how it was read."""

    sessions: dict[str, ListedSession] = field(default_factory=dict)
    pages_read: int = 0
    passes: int = 0
    read_to_end: bool = False  # False: stopped early, proved by the order
    newest_first: bool = True  # what the last pass observed
    complete: bool = False  # the last pass connected every page and, read to the end, matched `total`
    unusable: list[str] = field(default_factory=list)  # reasons of the items that could not be used (first few)
    unusable_count: int = 0

    def note_unusable(self, reasons: list[str]) -> None:
        self.unusable_count += len(reasons)
        self.unusable.extend(reasons[: max(0, 5 - len(self.unusable))])


@dataclass
class _Pass:
    accepted: dict[str, None] = field(default_factory=dict)  # this pass's ids, in list order
    last_created: datetime | None = None
    ordered: bool = True  # created_at known and non-increasing so far, in list order
    pages: int = 0
    last_total: int | None = None


async def discover(
    fetch_page: PageFetch,
    *,
    stop_before: datetime | None = None,
    page_size: int = PAGE_SIZE,
    overlap: int = OVERLAP,
    max_passes: int = MAX_PASSES,
) -> Discovery:
    """Read the list until every session in it is seen, or until the observed order proves the rest older than
    `stop_before` (None: read to the end)."""
    if not 0 <= overlap < page_size:
        raise ValueError(f"overlap must be 0..{page_size - 1}, not {overlap}")
    found = Discovery()
    while found.passes < max_passes:
        found.passes += 1
        outcome = await _read_pass(fetch_page, found, stop_before, page_size, max(overlap, 1))
        if outcome is not None:
            found.complete = True
            return found
    logger.warning("the sessions list kept changing under %d passes; it is not proven complete", max_passes)
    return found


async def _read_pass(
    fetch_page: PageFetch, found: Discovery, stop_before: datetime | None, limit: int, overlap: int
) -> _Pass | None:
    """One pass from offset 0; None when it must be read again (a page that never connected, a `total` missed)."""
    state = _Pass()
    ended = await _walk(fetch_page, found, state, limit, overlap, stop_before=stop_before)
    if ended is None:
        return None
    found.read_to_end, found.newest_first = ended == "end", state.ordered
    total = state.last_total
    if state.ordered and state.pages > 1:  # newest first: sessions created meanwhile are at the head
        for _ in range(MAX_HEAD_CHECKS):
            head = _Pass()
            if await _walk(fetch_page, found, head, limit, overlap, known=state.accepted) is None:
                return None
            state.accepted.update(head.accepted)
            total = head.last_total
            if head.pages == 1:  # the head connected in one request: nothing created before it was missed
                break
        else:
            return None
    if found.read_to_end and total is not None and total > len(state.accepted):
        logger.info("the list holds %d sessions and the pass saw %d: reading it again", total, len(state.accepted))
        return None
    return state


async def _walk(
    fetch_page: PageFetch, found: Discovery, state: _Pass, limit: int, overlap: int, *,
    stop_before: datetime | None = None, known: dict[str, None] | None = None,
) -> str | None:
    """Read from offset 0 on, every page connecting to the one before; why it ended, or None if a page never did.

    It ends at the end of the list ("end"), when the order proves the rest older than `stop_before`
    ("older"), or at the first page that holds a session of `known` ("known": the sessions before it are new).
    """
    step = limit - overlap
    offset, backsteps, longest = 0, 0, 0
    while True:
        page = await _read(fetch_page, found, state, offset, limit)
        longest = max(longest, page.total or 0, offset + page.size)
        if state.pages > 4 + 3 * (longest // step + 1):
            return None  # the list grows faster than it is read: start over (bounded by max_passes)
        if known is not None and (hit := _connection(page, known)) is not None:
            _accept(page.sessions[:hit], state)
            return "known"
        start = _connection(page, state.accepted) if state.accepted else -1
        if start is None:
            if backsteps >= MAX_BACKSTEPS or offset == 0:
                return None
            backsteps += 1
            offset = max(0, offset - step)
            continue
        backsteps = 0
        _accept(page.sessions[start + 1 :], state)
        if page.size < limit:  # not `total`, which could end a pass early if it were wrong
            return "end"
        if _older_than(state, stop_before):
            return "older"
        offset += step


async def _read(fetch_page: PageFetch, found: Discovery, state: _Pass, offset: int, limit: int) -> ListedPage:
    page = await fetch_page(offset, limit)
    found.pages_read += 1
    state.pages += 1
    state.last_total = page.total
    found.note_unusable(page.unusable)
    for session in page.sessions:
        found.sessions[session.session_id] = session  # the latest view wins
    return page


def _connection(page: ListedPage, accepted: dict[str, None]) -> int | None:
    """Index of the last session of `page` among `accepted`, or None: the page does not connect."""
    for index in range(len(page.sessions) - 1, -1, -1):
        if page.sessions[index].session_id in accepted:
            return index
    return None


def _accept(sessions: list[ListedSession], state: _Pass) -> None:
    """Extend the pass with the sessions that follow its last accepted one, checking their order."""
    for session in sessions:
        if session.session_id in state.accepted:
            continue  # reported twice in one page (the list changed under the page): counted once
        state.accepted[session.session_id] = None
        created = session.created_at
        if created is None or (state.last_created is not None and created > state.last_created):
            state.ordered = False
        if created is not None:
            state.last_created = created


def _older_than(state: _Pass, stop_before: datetime | None) -> bool:
    """Whether the order observed proves that every session after the last one read is older than `stop_before`."""
    return (stop_before is not None and state.ordered and state.last_created is not None
            and state.last_created < stop_before)
