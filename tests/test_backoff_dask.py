"""A 429 received by one Dask task pauses the requests of every task of the org until its Retry-After has passed.

What is asserted, with the simulated API answering one session request 429 with `Retry-After: 5` and nothing
else (the first from the 100th on that arrives while both tasks are sending, i.e. more than one task's slots
are in flight): let `t` be when that 429 was answered; no request of any worker arrives at the API in
[t + PROPAGATION, t + 5 - EARLY), where PROPAGATION bounds how long the other worker's task may take to see
the pause (its poll of the Prefect Variable, `flows/backoff.py`: 0.5 s, plus one read, plus the requests it
had in flight); the 429'd session's retry arrives at t + 5 or later; the load ends with every session loaded.
Without the shared gate the other worker keeps sending throughout the window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.fake_api import FakeDataset, FakePiper
from flows import backoff
from tests.conftest import CANARY_TOKEN, query
from tests.dask_support import serve_counting, warm_cluster

pytestmark = pytest.mark.prefect

RETRY_AFTER = 5.0
PROPAGATION = 2.0
"""Seconds after the 429 by which every task has seen the pause (a poll is 0.5 s, plus a write and a read)."""
EARLY = 0.1
"""Timer slack: an asyncio sleep may end this much before its deadline."""
THROTTLED_REQUEST = 100
"""From which session request on the simulated API throttles one that arrives with `BOTH_SENDING` in flight.
A fixed number alone (the 300th) once fell where only one task was sending, on a busy CI machine."""
BOTH_SENDING = 3
"""Session requests in flight that only both tasks together can have: each task holds 2 of the 4 slots."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Warmed workers: both must be sending when the 429 comes, not one still importing (a cold start
    took longer than the requests before it on a busy CI machine)."""
    with warm_cluster(CANARY_TOKEN) as local:
        yield local


def test_pause_variable_names_are_valid_and_keep_org_ids_apart() -> None:
    assert backoff.pause_variable("acme-1") == "piper-api-acme-1-paused-until"
    upper, lower = backoff.pause_variable("Acme.1"), backoff.pause_variable("acme_1")
    assert upper != lower and upper.startswith("piper-api-acme_1-") and upper.endswith("-paused-until")


def test_a_429_in_one_task_pauses_the_other_workers_task_until_its_retry_after(
    prefect_harness: None, token_env: None, cluster: Any, tmp_path: Path
) -> None:
    from flows.prefect_flow import load_sessions

    dataset = FakeDataset.generate(seed=29, sessions=800, payload_kb=1.0)
    state = FakePiper(dataset=dataset, token=CANARY_TOKEN, latency_ms=20, retry_after=f"{RETRY_AFTER:g}",
                      throttle_at=(THROTTLED_REQUEST,), throttle_min_in_flight=BOTH_SENDING)
    ids = dataset.session_ids
    with serve_counting(state) as (base_url, _):
        flow = asyncio.run(load_sessions(session_ids=ids, org_id=dataset.org_id, base_url=base_url,
                                         out_dir=str(tmp_path / "out"), concurrency=4, chunk_size=10,
                                         sessions_per_task=400, dask_address=cluster.scheduler_address,
                                         return_state=True))
    assert flow.is_completed(), flow.message
    assert query(tmp_path / "out", "SELECT count(*) FROM runs")[0][0] == len(ids), "every session loaded"
    fetches = [r for r in state.requests if r.session_id is not None]
    throttled = [r for r in fetches if r.status == 429]
    assert len(throttled) == 1, "one 429, as scripted"
    first = throttled[0]
    t = first.answered_at
    counted = [r for r in state.requests if r.session_id is not None or r.raw_path.endswith("/events")]
    overlapping = [r for r in counted if r.received_at <= first.received_at <= r.answered_at]
    assert len(overlapping) >= BOTH_SENDING, "more than one task's 2 slots were in flight: both workers were sending"
    in_window = [r for r in fetches if t + PROPAGATION <= r.received_at < t + RETRY_AFTER - EARLY]
    assert in_window == [], f"{len(in_window)} requests arrived during the pause"
    retry = next(r for r in fetches if r.session_id == first.session_id and r.received_at > first.received_at)
    assert retry.received_at >= t + RETRY_AFTER - EARLY and retry.status == 200
    late = [r for r in fetches if r.received_at >= t + RETRY_AFTER - EARLY]
    assert len(late) > 10, "the load went on after the pause"
