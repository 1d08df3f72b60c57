"""The Piper client against an injected transport: retries, outcomes, refusal, and no token leaks."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import httpx
import pytest

from connector.client import FetchBatch, FetchResult, PiperClient
from connector.errors import PiperAuthError, PiperConfigError
from connector.retry import RetryPolicy
from tests.conftest import CANARY_TOKEN, ORG_ID, assert_no_canary

RUN = b'{"id": "run-1", "status": "passed", "turn_results": []}'
Handler = Callable[[httpx.Request], httpx.Response]


def run_client(handler: Handler, session_ids: list[str], **kwargs: object) -> tuple[FetchBatch, list[float]]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def go() -> FetchBatch:
        client = PiperClient(
            base_url="https://piper.test",
            org_id=ORG_ID,
            token=CANARY_TOKEN,
            transport=httpx.MockTransport(handler),
            sleep=fake_sleep,
            rng=random.Random(0),
            **kwargs,  # type: ignore[arg-type]
        )
        async with client:
            return await client.fetch_many(session_ids)

    return asyncio.run(go()), sleeps


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def ok() -> httpx.Response:
    return httpx.Response(200, content=RUN, headers={"content-type": "application/json"})


def one(batch: FetchBatch) -> FetchResult:
    assert len(batch.results) == 1
    return batch.results[0]


def test_success_sends_bearer_token_and_parses_json() -> None:
    handler, seen = scripted(ok())
    result = one(run_client(handler, ["s-1"])[0])
    assert result.outcome == "ok" and result.attempts == 1 and result.http_status == 200
    assert result.payload == {"id": "run-1", "status": "passed", "turn_results": []}
    assert seen[0].headers["authorization"] == f"Bearer {CANARY_TOKEN}"
    assert seen[0].url.raw_path == f"/v1/orgs/{ORG_ID}/scenarios/runs/by-session/s-1".encode()


@pytest.mark.parametrize(
    "first",
    [
        httpx.Response(429, headers={"retry-after": "2"}),
        httpx.Response(500),
        httpx.Response(502),
        httpx.Response(503),
        httpx.Response(504),
        httpx.Response(200, content=b"<html>login</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b'{"id": "run-1", "sta', headers={"content-type": "application/json"}),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["429", "500", "502", "503", "504", "html", "truncated-json", "short-body", "connect", "read-timeout"],
)
def test_transient_failures_are_retried_then_load(first: httpx.Response | Exception) -> None:
    handler, seen = scripted(first, ok())
    batch, sleeps = run_client(handler, ["s-1"])
    result = one(batch)
    assert result.outcome == "ok" and result.attempts == 2
    assert len(seen) == 2 and len(sleeps) == 1


def test_retry_after_seconds_is_waited() -> None:
    handler, _ = scripted(httpx.Response(429, headers={"retry-after": "3"}), ok())
    _, sleeps = run_client(handler, ["s-1"])
    assert sleeps == [3.0]


def test_gives_up_after_max_retries_with_status_and_reason() -> None:
    handler, seen = scripted(httpx.Response(503))
    batch, sleeps = run_client(handler, ["s-1"], retry=RetryPolicy(max_retries=3))
    result = one(batch)
    assert result.outcome == "failed" and result.attempts == 4 and result.http_status == 503
    assert result.error == "HTTP 503; gave up after 4 attempts"
    assert len(seen) == 4 and len(sleeps) == 3


def test_non_json_failure_names_content_type_and_first_bytes() -> None:
    page = httpx.Response(200, content=b"<html><body>Sign in</body></html>", headers={"content-type": "text/html"})
    handler, _ = scripted(page)
    result = one(run_client(handler, ["s-1"], retry=RetryPolicy(max_retries=0))[0])
    assert result.outcome == "failed"
    assert result.error is not None and "'text/html'" in result.error and "<html><body>Sign in" in result.error


def test_404_is_not_found_and_not_retried() -> None:
    handler, seen = scripted(httpx.Response(404, json={"detail": "no run"}))
    result = one(run_client(handler, ["s-1"])[0])
    assert result.outcome == "not_found" and result.http_status == 404 and result.error is None
    assert len(seen) == 1


@pytest.mark.parametrize("status", [400, 422])
def test_client_errors_fail_without_retry(status: int) -> None:
    handler, seen = scripted(httpx.Response(status, json={"detail": [{"msg": "bad"}]}))
    result = one(run_client(handler, ["s-1"])[0])
    assert result.outcome == "failed" and result.http_status == status and len(seen) == 1


def test_redirect_is_reported_not_followed() -> None:
    handler, seen = scripted(httpx.Response(302, headers={"location": "https://evil.test/steal"}))
    result = one(run_client(handler, ["s-1"])[0])
    assert result.outcome == "failed" and "redirect" in (result.error or "")
    assert [r.url.host for r in seen] == ["piper.test"]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_stops_the_batch_and_never_leaks(status: int) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(status, json={"detail": "Invalid token"})

    batch, _ = run_client(handler, [f"s-{i}" for i in range(50)], concurrency=4)
    assert isinstance(batch.stopped, PiperAuthError) and batch.stopped.status == status
    assert len(batch.results) == 50 and all(r.outcome == "failed" for r in batch.results)
    assert len(calls) <= 4, "no new request after the refusal"
    assert "PIPER_API_TOKEN" in str(batch.stopped)
    assert_no_canary(str(batch.stopped), *(r.error or "" for r in batch.results))


def test_unsafe_ids_are_rejected_without_a_request() -> None:
    handler, seen = scripted(ok())
    batch, _ = run_client(handler, ["..", "", "ok-id", "bad\nid"])
    assert [r.outcome for r in batch.results] == ["rejected", "rejected", "ok", "rejected"]
    assert len(seen) == 1


def test_body_over_the_cap_fails_without_retry() -> None:
    big = httpx.Response(200, content=b"[" + b"1," * 5000 + b"1]", headers={"content-type": "application/json"})
    handler, seen = scripted(big)
    result = one(run_client(handler, ["s-1"], max_body_bytes=1000)[0])
    assert result.outcome == "failed" and "larger than 1000 bytes" in (result.error or "")
    assert len(seen) == 1


def test_results_keep_request_order_under_concurrency() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        sid = request.url.raw_path.rsplit(b"/", 1)[1].decode()
        return httpx.Response(200, json={"id": f"run-{sid}"})

    ids = [f"s-{i}" for i in range(40)]
    batch, _ = run_client(handler, ids, concurrency=8)
    assert [r.session_id for r in batch.results] == ids
    assert [r.payload for r in batch.results] == [{"id": f"run-{s}"} for s in ids]


def test_repr_and_errors_hide_the_token() -> None:
    client = PiperClient(base_url="https://piper.test", org_id=ORG_ID, token=CANARY_TOKEN)
    assert_no_canary(repr(client), repr(vars(client)))
    with pytest.raises(PiperConfigError, match="PIPER_API_TOKEN"):
        PiperClient(base_url="https://piper.test", org_id=ORG_ID, token="")
