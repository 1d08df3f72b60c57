"""The shared gate's rounds against a stand-in for the Prefect client: what it reads, adopts and writes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from flows.backoff import SharedGate


@dataclass
class Variable:
    value: Any


@dataclass
class Store:
    """The Prefect client's variable calls over a dict; counts them."""

    values: dict[str, Any] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def read_variable_by_name(self, name: str) -> Variable | None:
        self.calls.append("read")
        return Variable(self.values[name]) if name in self.values else None

    async def create_variable(self, variable: Any) -> None:
        self.calls.append("create")
        self.values[variable.name] = variable.value

    async def update_variable(self, variable: Any) -> None:
        self.calls.append("update")
        self.values[variable.name] = variable.value


class Clocks:
    def __init__(self, wall: float, monotonic: float) -> None:
        self.wall_now, self.mono_now = wall, monotonic

    def wall(self) -> float:
        return self.wall_now

    def mono(self) -> float:
        return self.mono_now

    def advance(self, seconds: float) -> None:
        self.wall_now += seconds
        self.mono_now += seconds


def gate(clocks: Clocks) -> SharedGate:
    return SharedGate("piper-api-org-paused-until", clock=clocks.mono, wall=clocks.wall)


def test_a_429_is_written_once_and_another_task_adopts_it_on_its_own_clock() -> None:
    store = Store()
    here = Clocks(wall=1_000_000.0, monotonic=50.0)
    there = Clocks(wall=1_000_000.0, monotonic=9_000.0)  # another host: same UTC, another monotonic origin
    mine, theirs = gate(here), gate(there)
    mine.pause(4.0)
    mine.pause(4.1)  # a burst of 429s: within the slack, no second write
    assert mine.remaining() == pytest.approx(4.1), "this task's own requests pause at once"
    asyncio.run(mine.sync(store))  # type: ignore[arg-type]
    assert store.values == {mine.name: 1_000_004.0} and store.calls == ["read", "create"]
    assert theirs.remaining() == 0
    asyncio.run(theirs.sync(store))  # type: ignore[arg-type]
    assert theirs.remaining() == 4.0 and store.calls[-1] == "read"
    assert (mine.reads, mine.writes, theirs.reads, theirs.writes) == (1, 1, 1, 0)


def test_a_pause_never_moves_the_shared_deadline_earlier() -> None:
    store = Store({"piper-api-org-paused-until": 1_000_010.0})
    clocks = Clocks(wall=1_000_000.0, monotonic=0.0)
    task = gate(clocks)
    task.pause(2.0)  # shorter than the 10 s another task wrote
    asyncio.run(task.sync(store))  # type: ignore[arg-type]
    assert store.values["piper-api-org-paused-until"] == 1_000_010.0 and store.calls == ["read"]
    assert task.remaining() == 10.0
    clocks.advance(11)
    task.pause(5.0)
    asyncio.run(task.sync(store))  # type: ignore[arg-type]
    assert store.values["piper-api-org-paused-until"] == 1_000_016.0 and store.calls[-1] == "update"


def test_a_skewed_clock_only_shortens_or_lengthens_the_pause() -> None:
    store = Store({"piper-api-org-paused-until": 1_000_005.0})
    behind = Clocks(wall=999_998.0, monotonic=0.0)  # 2 s behind the host that wrote it
    task = gate(behind)
    asyncio.run(task.sync(store))  # type: ignore[arg-type]
    assert task.remaining() == 7.0
