"""Faults below HTTP, injected by a raw-socket server on loopback: each ends in a truthful outcome."""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

import httpx
import pytest

from connector.client import FetchBatch, FetchResult, PiperClient, Timeouts
from connector.errors import PiperUnreachable
from connector.retry import RetryPolicy
from tests import faultserver as fs
from tests.conftest import CANARY_TOKEN, ORG_ID, assert_no_canary

FAST_RETRY = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.05)
SHORT = Timeouts(connect=1.0, read=1.0, request=2.0)


def fetch(base_url: str, session_ids: list[str], **kwargs: Any) -> FetchBatch:
    options: dict[str, Any] = {"retry": FAST_RETRY, "timeouts": SHORT, **kwargs}

    async def go() -> FetchBatch:
        async with PiperClient(base_url=base_url, org_id=ORG_ID, token=CANARY_TOKEN, **options) as client:
            return await client.fetch_many(session_ids)

    return asyncio.run(go())


def one(batch: FetchBatch) -> FetchResult:
    assert batch.stopped is None
    (result,) = batch.results
    assert_no_canary(result.error or "")
    return result


@pytest.mark.parametrize(
    "fault", [fs.reset, fs.short_body, fs.hang], ids=["connection-reset", "short-body", "read-timeout"]
)
def test_fault_then_success_is_loaded(fault: fs.Behaviour) -> None:
    with fs.FaultServer([fault, fs.ok]).running() as server:
        result = one(fetch(server.base_url, ["s-1"]))
        assert server.connections == 2
    # aiohttp retries a dropped connection once by itself (attempt 1); other faults cost one attempt.
    assert (result.outcome, result.http_status) == ("ok", 200) and result.attempts in (1, 2)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (fs.reset, "connection reset by peer"),
        (fs.short_body, "broken response"),
        (fs.hang, "read timed out"),
    ],
    ids=["connection-reset", "short-body", "read-timeout"],
)
def test_persistent_fault_fails_with_a_short_reason(fault: fs.Behaviour, reason: str) -> None:
    with fs.FaultServer([fault]).running() as server:
        result = one(fetch(server.base_url, ["s-1"]))
        assert server.connections >= 3
    assert result.outcome == "failed" and result.attempts == 3
    assert result.error is not None and reason.lower() in result.error.lower() and "gave up after 3" in result.error


def test_slow_drip_is_stopped_by_the_whole_request_deadline() -> None:
    with fs.FaultServer([fs.drip]).running() as server:
        started = time.monotonic()
        result = one(fetch(server.base_url, ["s-1"], retry=RetryPolicy(max_retries=0)))
        elapsed = time.monotonic() - started
    # Bytes arrive every 0.5 s, so the 1 s read timeout never fires; the 2 s deadline does.
    assert result.outcome == "failed" and result.error == "no complete response within 2 s; gave up after 1 attempts"
    assert elapsed < 10


def test_html_page_is_not_parsed_and_headers_are_not_quoted() -> None:
    with fs.FaultServer([fs.html_page]).running() as server:
        result = one(fetch(server.base_url, ["s-1"], retry=RetryPolicy(max_retries=0)))
    assert result.outcome == "failed"
    assert result.error is not None
    assert "'text/html'" in result.error and "<!DOCTYPE html><html><head><title>Sign in" in result.error
    assert "secret-cookie" not in result.error and "Set-Cookie" not in result.error


@pytest.mark.parametrize("fault", [fs.gzip_bomb, fs.huge], ids=["gzip-bomb", "huge-body"])
def test_oversized_body_stops_at_the_cap_with_bounded_memory(fault: fs.Behaviour) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with fs.FaultServer([fault]).running() as server:
        result = one(fetch(server.base_url, ["s-1"], max_body_bytes=1024 * 1024))
        assert server.connections == 1, "an oversized body is not retried"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.outcome == "failed" and "larger than 1048576 bytes" in (result.error or "")
    assert grown_mb < 32, f"peak memory grew by {grown_mb:.0f} MB"


def test_connection_refused_everywhere_stops_the_load() -> None:
    base_url = f"http://127.0.0.1:{fs.closed_port()}"
    started = time.monotonic()
    batch = fetch(base_url, [f"s-{i}" for i in range(200)], concurrency=4)
    assert isinstance(batch.stopped, PiperUnreachable)
    assert time.monotonic() - started < 10, "does not wait out every retry of every session"
    assert base_url in str(batch.stopped) and "PIPER_BASE_URL" in str(batch.stopped)
    assert len(batch.results) == 200 and all(r.outcome == "failed" for r in batch.results)
    assert_no_canary(str(batch.stopped), *(r.error or "" for r in batch.results))


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("[Errno -2] Name or service not known"), httpx.ConnectTimeout("timed out")],
    ids=["dns-failure", "connect-timeout"],
)
def test_dns_failure_or_connect_timeout_everywhere_stops_the_load(error: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    batch = fetch("https://piper.invalid", ["a", "b", "c"], transport=httpx.MockTransport(handler))
    assert isinstance(batch.stopped, PiperUnreachable) and "piper.invalid" in str(batch.stopped)


def test_connect_failures_after_a_response_are_per_session_failures() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(404)
        raise httpx.ConnectError("connection refused")

    batch = fetch("https://piper.test", ["a", "b"], transport=httpx.MockTransport(handler), concurrency=1)
    assert batch.stopped is None
    assert [r.outcome for r in batch.results] == ["not_found", "failed"]


def test_time_budget_bounds_a_session() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "30"})

    policy = RetryPolicy(max_retries=10, budget_seconds=5)
    result = one(fetch("https://piper.test", ["a"], transport=httpx.MockTransport(handler), retry=policy))
    assert result.outcome == "failed" and result.attempts == 1
    assert result.error == "HTTP 429; gave up after 1 attempts (5 s budget spent)"
