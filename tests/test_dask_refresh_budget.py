"""On a Dask load the scenario refresh takes its slots of the org's API budget, waiting a bounded time for them.

A dead task's slots stay taken until their lease lapses; the refresh waits for its own for at most
`wait_seconds` (by default past that lease), sends nothing while it waits, and, when they never come,
is skipped with a warning (the scenarios wait for the next load) instead of holding up the commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from flows.dimensions import ScenarioReport
from flows.settings import LoadSettings
from tests.conftest import SimulatedPiper
from warehouse.load import LoadTarget, open_load

pytestmark = pytest.mark.prefect


@pytest.fixture
def target(out_dir: Path) -> Iterator[LoadTarget]:
    load = open_load(out_dir, format="parquet")
    try:
        yield load.target
    finally:
        load.close()


async def leak(name: str, slots: int) -> UUID:
    """Take `slots` slots of the limit as a task that then died would: leased, never given back."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        response = await client.increment_concurrency_slots_with_lease([name], slots, "concurrency", 60.0)
        return UUID(response.json()["lease_id"])


async def give_back(lease_id: UUID) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await client.release_concurrency_slots_with_lease(lease_id)


def refresh(piper: SimulatedPiper, target: LoadTarget, slots: int, wait_seconds: float,
            while_waiting: Any = None) -> ScenarioReport:
    from prefect import flow

    from flows import scale
    from flows.prefect_flow import refresh_scenarios

    settings = LoadSettings(org_id=piper.org_id, base_url=piper.base_url, out_dir=Path(target.landing_root))
    referenced = [scenario.id for scenario in piper.dataset.scenarios[:3]]

    @flow
    async def in_a_flow() -> ScenarioReport:
        budget = scale.ApiBudget(scale.budget_name(piper.org_id), slots)
        refreshing = asyncio.ensure_future(refresh_scenarios(referenced, {}, settings, target, budget, wait_seconds))
        if while_waiting is not None:
            await while_waiting()
        return await refreshing

    return asyncio.run(in_a_flow())


def scenario_requests(piper: SimulatedPiper) -> list[Any]:
    return [r for r in piper.state.requests if "/scenarios" in r.raw_path and "/runs/" not in r.raw_path]


def test_the_refresh_waits_for_its_slots_and_is_skipped_when_they_stay_taken(
    prefect_harness: None, token_env: None, piper: SimulatedPiper, target: LoadTarget
) -> None:
    from flows import scale

    name = scale.budget_name(piper.org_id)
    asyncio.run(scale.set_budget(name, 2))
    lease = asyncio.run(leak(name, 2))  # a dead worker's task held the whole budget
    try:
        started = time.monotonic()
        report = refresh(piper, target, slots=2, wait_seconds=1.5)
        assert time.monotonic() - started >= 1.5
        assert report.fetched == 0 and report.referenced == 3
        assert report.warnings() == [f"scenarios: 3 not refreshed: 2 slots of the API budget {name} stayed taken "
                                     "for 1.5 s"]
        assert scenario_requests(piper) == [], "nothing was sent outside the budget"
    finally:
        asyncio.run(give_back(lease))

    lease = asyncio.run(leak(name, 2))
    given_back: list[float] = []

    async def lease_lapses() -> None:  # as the dead task's lease would, sooner
        await asyncio.sleep(1.0)
        given_back.append(time.monotonic())
        await give_back(lease)

    report = refresh(piper, target, slots=2, wait_seconds=60, while_waiting=lease_lapses)
    assert report.fetched == 3 and not report.problems, report.line()
    sent = scenario_requests(piper)
    assert sent and all(r.received_at >= given_back[0] for r in sent), "the refresh sent only once it had its slots"
