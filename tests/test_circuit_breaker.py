"""Against an API that answers only errors, the circuit breaker stops the load early; blips never trip it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connector.client import FetchBatch, PiperClient
from connector.errors import PiperAuthError, PiperCircuitOpen, PiperStopLoad
from connector.retry import CircuitBreaker, RetryPolicy
from tests.conftest import CANARY_TOKEN, ORG_ID, assert_no_canary

RUN = b'{"id": "run-1", "status": "passed", "turn_results": []}'
Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A clock that moves only when the client sleeps: backoff costs no real time."""

    def __init__(self, moves: bool = True) -> None:
        self.now = 1000.0
        self.moves = moves
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.moves:
            self.now += seconds


def fetch(handler: Handler, session_ids: list[str], time: FakeTime | None = None, **kwargs: Any) -> FetchBatch:
    time = time or FakeTime()
    options: dict[str, Any] = {"sleep": time.sleep, "clock": time.clock, **kwargs}

    async def go() -> FetchBatch:
        async with PiperClient(
            base_url="https://piper.test", org_id=ORG_ID, token=CANARY_TOKEN, transport=httpx.MockTransport(handler),
            rng=random.Random(0), **options,
        ) as client:
            return await asyncio.wait_for(client.fetch_many(session_ids), timeout=30)

    return asyncio.run(go())


def counting(answer: Callable[[int], httpx.Response]) -> tuple[Handler, list[int]]:
    """A handler answering request number n (from 1) with answer(n)."""
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(len(seen) + 1)
        return answer(seen[-1])

    return handler, seen


def ok() -> httpx.Response:
    return httpx.Response(200, content=RUN, headers={"content-type": "application/json"})


def unavailable() -> httpx.Response:
    return httpx.Response(503, json={"detail": "Service temporarily unavailable"})


def raising(exc: Exception) -> Callable[[int], httpx.Response]:
    def answer(number: int) -> httpx.Response:
        raise exc

    return answer


IDS = [f"s-{i}" for i in range(5000)]


@pytest.mark.parametrize(
    ("failures", "seconds", "trips"),
    [(50, 30.0, True), (49, 30.0, False), (50, 29.9, False), (500, 3600.0, True), (0, 0.0, False)],
)
def test_the_rule_needs_both_the_count_and_the_time(failures: int, seconds: float, trips: bool) -> None:
    assert CircuitBreaker(failures=50, seconds=30).trips(failures, seconds) is trips


@pytest.mark.parametrize("options", [{"failures": 0}, {"seconds": -1}])
def test_a_breaker_that_could_never_close_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="circuit breaker"):
        CircuitBreaker(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "answer",
    [
        lambda n: unavailable(),
        lambda n: httpx.Response(429, headers={"retry-after": "5"}),
        raising(httpx.ReadError("[Errno 104] Connection reset by peer")),
        raising(httpx.ReadTimeout("timed out")),
        lambda n: ok() if n == 1 else raising(httpx.ConnectError("connection refused"))(n),  # went down mid-load
    ],
    ids=["503", "429", "reset", "read-timeout", "down-after-one-answer"],
)
def test_an_api_answering_only_errors_trips_the_breaker_after_few_requests(answer: Callable[[int], Any]) -> None:
    handler, seen = counting(answer)
    batch = fetch(handler, IDS, concurrency=16)
    stop = batch.stopped
    assert isinstance(stop, PiperCircuitOpen)
    assert stop.failures == 50 and stop.seconds >= 30
    assert 50 <= len(seen) <= 51, "no request after the breaker tripped"
    assert [result.session_id for result in batch.results] == IDS, "every session accounted for"
    assert sum(result.outcome == "ok" for result in batch.results) == len(seen) - stop.failures
    failed = [result for result in batch.results if result.outcome == "failed"]
    assert len(failed) == len(IDS) - (len(seen) - stop.failures)
    assert all(result.error == stop.unfetched_reason for result in failed if result.attempts == 0)
    assert "--max-consecutive-failures" in str(stop) and "50 requests in a row" in str(stop)
    assert_no_canary(str(stop), *(result.error or "" for result in batch.results))


def test_the_message_says_what_was_seen() -> None:
    handler, _ = counting(lambda n: unavailable())
    stop = fetch(handler, IDS[:200], circuit_breaker=CircuitBreaker(failures=10, seconds=5)).stopped
    assert isinstance(stop, PiperCircuitOpen) and isinstance(stop, PiperStopLoad)
    assert stop.failures >= 10 and stop.seconds >= 5, "tripped when both held, not before"
    assert str(stop) == (
        f"the Piper API gave no usable answer to the last {stop.failures} requests in a row, over {stop.seconds:.0f} s "
        "(last: HTTP 503); stopped sending requests. Rerun when the API has recovered, or raise the threshold "
        "(--max-consecutive-failures, or the flow parameter max_consecutive_failures)"
    )
    assert stop.unfetched_reason == f"not fetched: the load stopped: {stop}"


def test_sessions_in_flight_end_failed_and_those_waiting_to_retry_are_woken() -> None:
    never = asyncio.Event()

    async def sleep_forever(seconds: float) -> None:
        await never.wait()  # a backoff that would outlast the test: only the breaker's stop ends it

    handler, seen = counting(lambda n: unavailable())
    batch = fetch(handler, IDS[:100], concurrency=8, sleep=sleep_forever,
                  circuit_breaker=CircuitBreaker(failures=8, seconds=0))
    assert isinstance(batch.stopped, PiperCircuitOpen)
    assert len(seen) == 8, "each of the 8 sessions in flight was sent once, then waited"
    assert len(batch.results) == 100 and all(result.outcome == "failed" for result in batch.results)
    assert {result.error for result in batch.results} == {batch.stopped.unfetched_reason}


def test_any_stop_wakes_the_sessions_waiting_to_retry() -> None:
    never = asyncio.Event()

    async def sleep_forever(seconds: float) -> None:
        await never.wait()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/s-0"):  # a 503, not a 429: a 429 would hold s-1 back (test_backoff_gate.py)
            return httpx.Response(503)
        return httpx.Response(401, json={"detail": "Invalid token"})

    batch = fetch(handler, ["s-0", "s-1", "s-2"], concurrency=2, sleep=sleep_forever)
    assert isinstance(batch.stopped, PiperAuthError)
    assert [result.outcome for result in batch.results] == ["failed"] * 3


def test_after_tripping_the_client_sends_nothing_more() -> None:
    handler, seen = counting(lambda n: unavailable())
    time = FakeTime()

    async def go() -> None:
        async with PiperClient(
            base_url="https://piper.test", org_id=ORG_ID, token=CANARY_TOKEN, transport=httpx.MockTransport(handler),
            sleep=time.sleep, clock=time.clock, circuit_breaker=CircuitBreaker(failures=3, seconds=0),
        ) as client:
            batch = await client.fetch_many(IDS[:10])
            assert isinstance(batch.stopped, PiperCircuitOpen)
            sent = len(seen)
            with pytest.raises(PiperCircuitOpen):
                await client.fetch_run_by_session("s-later")
            assert len(seen) == sent

    asyncio.run(go())


def test_failures_in_a_burst_shorter_than_the_time_never_trip() -> None:
    handler, seen = counting(lambda n: unavailable())
    batch = fetch(handler, IDS[:40], time=FakeTime(moves=False), concurrency=8, retry=RetryPolicy(max_retries=5))
    assert batch.stopped is None, "240 failures in a row, but within no time at all"
    assert len(seen) == 240 and all(result.error == "HTTP 503; gave up after 6 attempts" for result in batch.results)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_intermittent_errors_never_trip_it(concurrency: int) -> None:
    handler, seen = counting(lambda n: unavailable() if n % 3 == 0 else ok())
    batch = fetch(handler, IDS[:300], concurrency=concurrency, circuit_breaker=CircuitBreaker(failures=2, seconds=0))
    assert batch.stopped is None
    assert all(result.outcome == "ok" for result in batch.results)
    assert len(seen) - 300 == len(seen) // 3, "each 503 cost one retry"


@pytest.mark.parametrize("answer", [lambda n: httpx.Response(404), lambda n: httpx.Response(422, json={})],
                         ids=["404", "422"])
def test_any_answer_other_than_a_retried_one_resets_the_count(answer: Callable[[int], httpx.Response]) -> None:
    handler, seen = counting(lambda n: answer(n) if n % 3 == 0 else unavailable())
    batch = fetch(handler, IDS[:100], concurrency=1, circuit_breaker=CircuitBreaker(failures=3, seconds=0))
    assert batch.stopped is None and len(seen) == 300


def test_no_breaker_retries_every_session_to_exhaustion() -> None:
    handler, seen = counting(lambda n: unavailable())
    batch = fetch(handler, IDS[:100], circuit_breaker=None, retry=RetryPolicy(max_retries=2))
    assert batch.stopped is None and len(seen) == 300
    assert all(result.error == "HTTP 503; gave up after 3 attempts" for result in batch.results)
