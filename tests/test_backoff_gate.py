"""A 429 holds back every request of the client for its wait, not only the retry of the request that got it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx

from connector.backoff import LocalGate
from connector.client import FetchBatch, PiperClient
from connector.errors import PiperAuthError
from tests.conftest import CANARY_TOKEN, ORG_ID
from tests.test_circuit_breaker import FakeTime

RUN = b'{"id": "run-1", "status": "passed", "turn_results": []}'


def ok() -> httpx.Response:
    return httpx.Response(200, content=RUN, headers={"content-type": "application/json"})


class VirtualTime(FakeTime):
    """A clock that moves to the end of each sleep: coroutines sleeping at once share the time they sleep."""

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        deadline = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, deadline)


def fetch(handler: Any, ids: list[str], time: VirtualTime, **kwargs: Any) -> FetchBatch:
    async def go() -> FetchBatch:
        async with PiperClient(base_url="https://piper.test", org_id=ORG_ID, token=CANARY_TOKEN,
                               transport=httpx.MockTransport(handler), sleep=time.sleep, clock=time.clock,
                               rng=random.Random(0), **kwargs) as client:
            return await client.fetch_many(ids)

    return asyncio.run(go())


def test_a_429_with_retry_after_holds_back_the_other_sessions_until_it_has_passed() -> None:
    time = VirtualTime()
    sent: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        session = request.url.path.rsplit("/", 1)[1]
        sent.append((session, time.now))
        if session == "s-0" and sum(1 for s, _ in sent if s == "s-0") == 1:
            return httpx.Response(429, headers={"retry-after": "7"})
        return ok()

    batch = fetch(handler, [f"s-{n}" for n in range(6)], time, concurrency=3)
    assert [result.outcome for result in batch.results] == ["ok"] * 6
    assert sent[0] == ("s-0", 1000.0) and sent[1] == ("s-0", 1007.0), "the retry after Retry-After"
    assert all(at >= 1007.0 for _, at in sent[1:]), "no session was sent during the pause"
    assert time.sleeps == [7.0] * 3, "the retry waited for its Retry-After, the two other workers at the gate"


def test_sessions_in_flight_wait_at_the_gate_and_a_429_without_retry_after_pauses_for_the_backoff() -> None:
    time = VirtualTime()
    sent: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        session = request.url.path.rsplit("/", 1)[1]
        sent.append((session, time.now))
        if len(sent) == 1:
            return httpx.Response(429)  # no Retry-After: the client's own backoff (0.25 to 0.5 s) is the pause
        return ok()

    batch = fetch(handler, [f"s-{n}" for n in range(8)], time, concurrency=4)
    assert [result.outcome for result in batch.results] == ["ok"] * 8
    pause = time.sleeps[0]
    assert 0.25 <= pause <= 0.5
    assert [at for _, at in sent[1:]] == [1000.0 + pause] * 8, "the retry and every later request waited for it"


def test_a_gate_held_by_another_client_holds_this_one_until_it_has_passed() -> None:
    time = VirtualTime()
    gate = LocalGate(time.clock)
    gate.pause(60)  # another client of the same gate got a 429 with Retry-After: 60
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(time.now)
        return ok()

    batch = fetch(handler, ["s-0", "s-1", "s-2"], time, concurrency=2, gate=gate)
    assert [result.outcome for result in batch.results] == ["ok"] * 3
    assert sent == [1060.0] * 3


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)


def test_a_stop_wakes_the_sessions_waiting_at_the_gate() -> None:
    time = FakeTime(moves=False)
    waiting: list[float] = []
    never = asyncio.Event()
    throttled = asyncio.Event()
    seen: list[str] = []

    async def sleep_forever(seconds: float) -> None:
        waiting.append(seconds)
        await never.wait()

    async def handler(request: httpx.Request) -> httpx.Response:
        session = request.url.path.rsplit("/", 1)[1]
        seen.append(session)
        if session == "s-0":  # answered once s-1 and s-2 are in flight
            await until(lambda: len(seen) == 3)
            throttled.set()
            return httpx.Response(429, headers={"retry-after": "60"})
        if session == "s-2":  # in flight when the 429 came: answered, and its worker takes s-3, which waits
            await throttled.wait()
            return ok()
        await until(lambda: len(waiting) == 2)  # s-1: refused once s-0 waits to retry and s-3 waits at the gate
        return httpx.Response(401, json={"detail": "Invalid token"})

    async def go() -> FetchBatch:
        async with PiperClient(base_url="https://piper.test", org_id=ORG_ID, token=CANARY_TOKEN,
                               transport=httpx.MockTransport(handler), sleep=sleep_forever, clock=time.clock,
                               concurrency=3) as client:
            return await asyncio.wait_for(client.fetch_many(["s-0", "s-1", "s-2", "s-3"]), 10)

    batch = asyncio.run(go())
    assert waiting == [60.0, 60.0], "s-0 waited to retry, s-3 waited at the gate"
    assert sorted(seen) == ["s-0", "s-1", "s-2"], "s-3 was never sent"
    assert isinstance(batch.stopped, PiperAuthError)
    assert [result.outcome for result in batch.results] == ["failed", "failed", "ok", "failed"]


def test_a_local_gate_keeps_the_longest_pause() -> None:
    time = VirtualTime()
    gate = LocalGate(time.clock)
    assert gate.remaining() == 0
    gate.pause(5)
    gate.pause(2)
    assert gate.remaining() == 5
    assert not gate.hold_until(1003.0) and gate.hold_until(1009.0) and gate.remaining() == 9
    time.now += 10
    assert gate.remaining() == 0
