"""The session events endpoint: served by the simulated API consistently with its sessions, fetched by the client."""

from __future__ import annotations

import asyncio
import random
from urllib.parse import quote

import httpx
import orjson
import pytest

from connector.client import FetchBatch, FetchResult, PiperClient
from connector.errors import PiperAuthError
from connector.fake_api import FakeDataset
from tests.conftest import CANARY_TOKEN, ORG_ID, SimulatedPiper, assert_no_canary


def events_path(org_id: str, session_id: str) -> str:
    return f"/v1/orgs/{org_id}/responses/sessions/{quote(session_id, safe='')}/events"


def get(piper: SimulatedPiper, path: str, token: str = CANARY_TOKEN) -> httpx.Response:
    return httpx.get(piper.base_url + path, headers={"Authorization": f"Bearer {token}"})


def listed(piper: SimulatedPiper) -> dict[str, dict[str, object]]:
    body = get(piper, f"/v1/orgs/{piper.org_id}/sessions/?limit=500").json()
    return {item["id"]: item for item in body["sessions"]}


def test_the_events_of_every_listed_session_agree_with_the_list(piper: SimulatedPiper) -> None:
    sessions = listed(piper)
    run_counts = set()
    for session_id, item in sessions.items():
        response = get(piper, events_path(piper.org_id, session_id))
        assert response.status_code == 200, session_id
        body = response.json()
        session = body["session"]
        assert session["session_id"] == session_id
        assert session["organization_id"] == piper.org_id
        for name in ("agent_id", "channel_id", "is_test", "created_at", "updated_at"):
            assert session[name] == item[name], (session_id, name)
        runs = body["runs"]
        run_counts.add(len(runs))
        for run in runs:
            assert run["session_id"] == session_id
            calls = [e for e in run["events"] if e["event_type"] == "llm_call"]
            assert run["total_input_tokens"] == sum(e["input_tokens"] for e in calls)
            assert run["total_output_tokens"] == sum(e["output_tokens"] for e in calls)
            assert run["total_requests"] == len(calls)
            assert run["total_cost_usd"] == pytest.approx(sum(e["cost_usd"] for e in calls))
            assert {e["model_name"] for e in calls} == {run["model_name"]}
            assert all(e["run_id"] == run["id"] for e in run["events"])
    assert run_counts <= {1, 2, 3} and len(run_counts) > 1


def test_the_events_are_deterministic_and_a_rerun_adds_one_agent_run() -> None:
    from connector.fake_api._views import session_events

    first, second = FakeDataset.generate(seed=3, sessions=5), FakeDataset.generate(seed=3, sessions=5)
    session_id = first.session_ids[0]
    body = session_events(first, session_id)
    assert body is not None and body == session_events(second, session_id)
    before = orjson.loads(body)["runs"]
    first.rerun(session_id)
    after = orjson.loads(session_events(first, session_id) or b"{}")["runs"]
    assert after[: len(before)] == before, "earlier agent runs never change"
    assert len(after) == len(before) + 1
    assert after[-1]["id"] not in {run["id"] for run in before}


def test_unknown_session_wrong_token_and_scripted_faults(piper: SimulatedPiper) -> None:
    assert get(piper, events_path(piper.org_id, "no-such-session")).status_code == 404
    session_id = piper.dataset.session_ids[0]
    path = events_path(piper.org_id, session_id)
    assert get(piper, path, token="pat_wrong").status_code == 401
    piper.state.script_path(path, "429", "503")
    throttled = get(piper, path)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "0"
    assert get(piper, path).status_code == 503
    assert get(piper, path).status_code == 200
    assert [r.status for r in piper.state.requests if r.raw_path == path] == [401, 429, 503, 200]


def run_client(handler: httpx.MockTransport, action: str, session_ids: list[str]) -> tuple[object, list[float]]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def go() -> object:
        client = PiperClient(base_url="https://piper.test", org_id=ORG_ID, token=CANARY_TOKEN, transport=handler,
                             sleep=fake_sleep, rng=random.Random(0))
        async with client:
            if action == "events":
                return await client.fetch_session_events(session_ids[0])
            return await client.fetch_many(session_ids, with_events=True)

    return asyncio.run(go()), sleeps


RUN = b'{"id": "run-1", "status": "passed", "turn_results": []}'


def test_the_client_retries_the_events_as_any_request_and_honours_retry_after() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}, json={"detail": "slow down"}),
        httpx.Response(503, json={"detail": f"token {CANARY_TOKEN}"}),
        httpx.Response(200, json={"runs": [], "echo": CANARY_TOKEN}),
    ]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return answers.pop(0)

    result, sleeps = run_client(httpx.MockTransport(handler), "events", ["slack/C01 #x"])
    assert isinstance(result, FetchResult)
    assert result.outcome == "ok" and result.attempts == 3
    assert sleeps[0] == 7.0
    assert seen == [f"/v1/orgs/{ORG_ID}/responses/sessions/slack%2FC01%20%23x/events"] * 3
    assert_no_canary(orjson.dumps(result.payload), result.body or b"")


def test_fetch_many_with_events_fetches_them_after_an_ok_run_only() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        if path.endswith("/by-session/gone"):
            return httpx.Response(404, json={"detail": "No scenario run found for session"})
        if path.endswith("/events"):
            return httpx.Response(200, json={"runs": [{"id": "a1"}]})
        return httpx.Response(200, content=RUN, headers={"content-type": "application/json"})

    batch, _ = run_client(httpx.MockTransport(handler), "many", ["s1", "gone"])
    assert isinstance(batch, FetchBatch)
    by_id = {result.session_id: result for result in batch.results}
    assert by_id["s1"].events is not None and by_id["s1"].events.payload == {"runs": [{"id": "a1"}]}
    assert by_id["gone"].outcome == "not_found" and by_id["gone"].events is None


def test_a_refused_token_on_the_events_stops_the_batch_and_names_every_session() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.raw_path.decode().endswith("/events"):
            return httpx.Response(403, json={"detail": "Not enough permissions"})
        return httpx.Response(200, content=RUN, headers={"content-type": "application/json"})

    batch, _ = run_client(httpx.MockTransport(handler), "many", ["s1", "s2"])
    assert isinstance(batch, FetchBatch)
    assert isinstance(batch.stopped, PiperAuthError)
    assert [r.outcome for r in batch.results] == ["failed", "failed"], "a session without its events is not loaded"
