"""`PiperClient.list_sessions_page`: a page of the sessions list, with the by-session fetch's retries and redaction."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest

from connector.client import PiperClient, SessionsPage
from connector.errors import PiperAuthError, PiperListFailed
from connector.retry import RetryPolicy
from tests.conftest import CANARY_TOKEN, ORG_ID, assert_no_canary
from tests.test_client import Handler, scripted

ITEM = {"id": "web-1", "scenario_run_status": "passed", "created_at": "2026-10-01T00:00:00Z"}


def page(body: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def list_page(
    handler: Handler, *, limit: int = 100, offset: int = 0, **kwargs: object
) -> tuple[SessionsPage, list[float]]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def go() -> SessionsPage:
        client = PiperClient(base_url="https://piper.test", org_id=ORG_ID, token=CANARY_TOKEN,
                             transport=httpx.MockTransport(handler), sleep=fake_sleep, rng=random.Random(0),
                             **kwargs)  # type: ignore[arg-type]
        async with client:
            return await client.list_sessions_page(limit=limit, offset=offset)

    return asyncio.run(go()), sleeps


def test_a_page_sends_limit_offset_and_the_token_and_returns_items_and_total() -> None:
    handler, seen = scripted(page({"sessions": [ITEM], "total": 7}))
    result, _ = list_page(handler, limit=50, offset=100)
    assert (result.items, result.total, result.offset, result.limit) == ([ITEM], 7, 100, 50)
    request = seen[0]
    assert request.url.path == f"/v1/orgs/{ORG_ID}/sessions/"
    assert dict(request.url.params) == {"limit": "50", "offset": "100"}
    assert request.headers["authorization"] == f"Bearer {CANARY_TOKEN}"


@pytest.mark.parametrize("first", [httpx.Response(503), httpx.Response(429, headers={"Retry-After": "2"}),
                                   httpx.ConnectError("reset"),
                                   httpx.Response(200, content=b"<html>", headers={"content-type": "text/html"})])
def test_transient_failures_are_retried_like_a_fetch(first: httpx.Response | Exception) -> None:
    handler, seen = scripted(first, page({"sessions": [], "total": 0}))
    result, sleeps = list_page(handler)
    assert result.items == [] and result.total == 0 and result.attempts == 2 and len(seen) == 2
    assert len(sleeps) == 1


def test_a_missing_or_bad_total_is_unknown_not_an_error() -> None:
    for body in ({"sessions": []}, {"sessions": [], "total": "many"}, {"sessions": [], "total": -1}):
        handler, _ = scripted(page(body))
        assert list_page(handler)[0].total is None


@pytest.mark.parametrize(("response", "reason"), [
    (page({"detail": "Not Found"}, 404), "HTTP 404: check the org id"),
    (page({"detail": [{"loc": ["query", "limit"]}]}, 422), "HTTP 422"),
    (page([ITEM]), 'not an object with a "sessions" list'),
    (page({"sessions": {"id": "x"}}), 'not an object with a "sessions" list'),
])
def test_an_unusable_page_raises_list_failed_naming_the_page(response: httpx.Response, reason: str) -> None:
    handler, _ = scripted(response)
    with pytest.raises(PiperListFailed, match=reason) as caught:
        list_page(handler, offset=500)
    assert "offset 500" in str(caught.value)


def test_retries_exhausted_raise_list_failed_with_the_attempts() -> None:
    handler, seen = scripted(httpx.Response(500))
    with pytest.raises(PiperListFailed, match="gave up after 3 attempts"):
        list_page(handler, retry=RetryPolicy(max_retries=2))
    assert len(seen) == 3


def test_a_refused_token_stops_and_no_error_quotes_the_token() -> None:
    handler, _ = scripted(page({"detail": f"bad token {CANARY_TOKEN}"}, 401))
    with pytest.raises(PiperAuthError) as caught:
        list_page(handler)
    handler, _ = scripted(page({"detail": f"echo {CANARY_TOKEN}"}, 400))
    with pytest.raises(PiperListFailed) as failed:
        list_page(handler)
    assert "[REDACTED]" in str(failed.value)
    assert_no_canary(str(caught.value), str(failed.value))


def test_items_are_redacted_too() -> None:
    handler, _ = scripted(page({"sessions": [{**ITEM, "agent_name": f"x {CANARY_TOKEN}"}], "total": 1}))
    result, _ = list_page(handler)
    assert_no_canary(json.dumps(result.items))


def test_bad_paging_arguments_are_refused_before_any_request() -> None:
    handler, seen = scripted(page({"sessions": []}))
    for limit, offset in ((0, 0), (501, 0), (10, -1)):
        with pytest.raises(ValueError, match="limit must be"):
            list_page(handler, limit=limit, offset=offset)
    assert seen == []
