"""A Dask load whose worker is killed leaks no slot of the org's API budget, even where no repossessor runs.

The test server, like Prefect's temporary server, never takes back the slots of a lapsed lease: only the
flow's giving the dead task's lease back by its id frees them (`flows/budget.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.fake_api import FakeDataset, FakePiper
from flows import budget, scale
from tests.conftest import CANARY_TOKEN, query
from tests.dask_support import serve_counting, warm_cluster

pytestmark = pytest.mark.prefect


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A local Dask cluster of 2 warmed worker processes, the token in their environment."""
    with warm_cluster(CANARY_TOKEN) as local:
        yield local


def active_slots(name: str) -> int:
    from prefect.client.orchestration import get_client

    async def read() -> int:
        async with get_client() as client:
            return (await client.read_global_concurrency_limit_by_name(name)).active_slots

    return asyncio.run(read())


def run_dask_flow(base_url: str, org_id: str, out_dir: Path, ids: list[str], **settings: Any) -> Any:
    from flows.prefect_flow import load_sessions

    return asyncio.run(load_sessions(session_ids=ids, org_id=org_id, base_url=base_url, out_dir=str(out_dir),
                                     return_state=True, **settings))


def test_a_killed_worker_leaks_no_slot_and_the_next_load_of_the_org_completes(
    prefect_harness: None, token_env: None, cluster: Any, tmp_path: Path
) -> None:
    from distributed import Client

    dataset = FakeDataset.generate(seed=29, sessions=48, payload_kb=2.0)
    dataset.org_id = str(uuid.uuid4())  # an org of its own on the session's one server
    state = FakePiper(dataset=dataset, token=CANARY_TOKEN, latency_ms=100, retry_after="0")
    name = scale.budget_name(dataset.org_id)
    ids = dataset.session_ids
    with serve_counting(state) as (base_url, in_flight), Client(cluster.scheduler_address) as client:
        pids: dict[str, int] = client.run(os.getpid)
        result: dict[str, Any] = {}
        # 2 slots: each of the 2 workers' tasks holds the whole share, 1, so the dead one's must come back
        # for the load to go on
        load = threading.Thread(target=lambda: result.update(state=run_dask_flow(
            base_url, dataset.org_id, tmp_path / "first", ids[:32], concurrency=2, chunk_size=2,
            sessions_per_task=8, dask_address=cluster.scheduler_address)))
        load.start()
        deadline = time.monotonic() + 120
        while state.session_hits.total() < 4 and time.monotonic() < deadline:  # both tasks are fetching
            time.sleep(0.01)
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        load.join(timeout=240)
        assert not load.is_alive() and "state" in result
        assert active_slots(name) == 0, "the killed task's lease was given back"
        assert in_flight.most <= 2

        # 1 slot: a slot the first load had leaked would hold the whole budget, and this load would wait for good
        load = threading.Thread(target=lambda: result.update(second=run_dask_flow(
            base_url, dataset.org_id, tmp_path / "second", ids[32:], concurrency=1, chunk_size=2,
            sessions_per_task=8, dask_address=cluster.scheduler_address)))
        load.start()
        load.join(timeout=180)
        assert not load.is_alive(), "the second load of the org waited for slots that nobody holds"
        assert result["second"].is_completed(), result["second"].message
        assert query(tmp_path / "second", "SELECT count(*) FROM runs")[0][0] == 16
        assert active_slots(name) == 0
    assert in_flight.most <= 2, "within the budget throughout"


def test_a_task_whose_lease_is_gone_stops(prefect_harness: None) -> None:
    """A worker cut off from the scheduler keeps running its task; the flow gave its lease back, so it stops."""
    from prefect.client.orchestration import get_client

    name = scale.budget_name(str(uuid.uuid4()))

    async def scenario() -> list[str]:
        await scale.set_budget(name, 2)
        async with get_client() as client:
            granted = (await client.increment_concurrency_slots_with_lease([name], 1, "concurrency", 60.0)).json()
        steps: list[str] = []
        with pytest.raises(budget.LeaseLost):
            async with budget.keeping(granted["lease_id"], renew_seconds=0.2):
                steps.append("renewed")
                async with get_client() as client:
                    await client.release_concurrency_slots_with_lease(uuid.UUID(granted["lease_id"]))
                await asyncio.sleep(30)  # sending requests, until the next renewal finds the lease gone
                steps.append("went on")
        return steps

    started = time.monotonic()
    assert asyncio.run(scenario()) == ["renewed"]
    assert time.monotonic() - started < 10
    assert active_slots(name) == 0


def test_the_flow_says_which_limit_it_waits_for_and_how_to_free_it(
    prefect_harness: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Slots held by someone else (another load, or leaked by a killed one): the flow waits, and says so."""
    from prefect.client.orchestration import get_client

    name = scale.budget_name(str(uuid.uuid4()))

    async def leak() -> str:
        await scale.set_budget(name, 2)
        async with get_client() as client:
            return str((await client.increment_concurrency_slots_with_lease([name], 2, "concurrency", 60.0))
                       .json()["lease_id"])

    leaked = asyncio.run(leak())
    clock = [0.0]
    log = logging.getLogger("test-budget-wait")
    with caplog.at_level(logging.WARNING, logger="test-budget-wait"), \
            budget.TaskLeases(name, 1, 2, log=log, clock=lambda: clock[0]) as leases:
        assert not leases.take(0)
        clock[0] += budget.FIRST_WAIT_LOG_SECONDS
        assert not leases.take(0)
        clock[0] += 1.0
        assert not leases.take(0), "the server's Retry-After"
        clock[0] += budget.RETRY_SECONDS[1]
        assert not leases.take(0)
        lines = [record.getMessage() for record in caplog.records]
        assert len(lines) == 1, "once, then every minute"
        assert lines[0].startswith(f"waiting 5 s for 1 slots of the global concurrency limit {name}: 2 of its 2 "
                                   "slots are taken")
        assert f"`prefect gcl inspect {name}`" in lines[0] and f"`prefect gcl update {name} --active-slots 0`" \
            in lines[0]

        async def free() -> None:
            async with get_client() as client:
                await client.release_concurrency_slots_with_lease(uuid.UUID(leaked))

        asyncio.run(free())
        clock[0] += budget.RETRY_SECONDS[1]
        assert leases.take(0) and leases.take(1), "room again"
        assert not leases.take(2), "the limit is 2 slots, of 1 per task: no request while the load's own hold them"
    assert active_slots(name) == 0, "the leases still held are given back when the flow's run of the tasks ends"


class CountingLeases:
    """A stand-in for the flow's leases: `room` tasks may hold one at a time; what was taken and given back."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.held: set[int] = set()
        self.taken: list[int] = []
        self.given_back: list[int] = []
        self.most = 0

    def take(self, index: int) -> bool:
        if len(self.held) >= self.room:
            return False
        self.held.add(index)
        self.taken.append(index)
        self.most = max(self.most, len(self.held))
        return True

    def give_back(self, index: int) -> None:
        self.held.remove(index)
        self.given_back.append(index)


def test_every_task_run_holds_a_lease_and_gives_it_back_however_it_ended() -> None:
    import concurrent.futures

    from flows.chunks import ChunkReport
    from tests.test_dask_tasks import Future

    leases = CountingLeases(room=2)
    submitted: list[tuple[int, int, bool]] = []

    def behaviour(index: int, attempt: int) -> list[ChunkReport] | Exception:
        time.sleep(0.05)
        return RuntimeError("its worker died") if index in (1, 2) else [ChunkReport(f"task-{index}")]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        def submit(index: int, attempt: int) -> Any:
            submitted.append((index, attempt, index in leases.held))
            return Future(pool.submit(behaviour, index, attempt))

        outcome = scale.run_tasks(submit, tasks=4, window=4, leases=leases)
    assert all(held for _, _, held in submitted), "no task is submitted before it holds its share"
    assert leases.most == 2, "never more shares than the budget has room for, whatever the window"
    assert sorted(leases.taken) == sorted(leases.given_back) == [0, 1, 1, 2, 2, 3], "a run again takes a new one"
    assert leases.held == set()
    assert sorted(outcome.failed) == [1, 2] and sorted(r.part for r in outcome.reports) == ["task-0", "task-3"]
