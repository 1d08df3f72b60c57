"""The simulated Piper API, over real HTTP on loopback: data, routing, auth, faults and knobs."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from connector.fake_api import FakeDataset, FakePiper, serve

RUN_KEYS = {"id", "scenario_id", "scenario_name", "status", "started_at", "completed_at", "turn_results"}
TURN_KEYS = {"id", "turn_index", "stopped_early", "passed", "response_content", "criteria_results"}
CRITERIA_KEYS = {
    "id", "criteria_id", "verdict", "criteria_question", "criteria_type", "critique", "evidence",
    "input_tokens", "output_tokens",
}
SESSION_KEYS = {
    "id", "agent_id", "agent_name", "channel_id", "channel_type", "channel_name", "message_count", "is_test",
    "scenario_run_status", "created_at", "updated_at",
}


@pytest.fixture
def state() -> FakePiper:
    return FakePiper(FakeDataset.generate(seed=3, sessions=40))


@pytest.fixture
def client(state: FakePiper) -> Iterator[httpx.Client]:
    with serve(state) as base_url, httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {state.token}"}, timeout=5
    ) as http:
        yield http


def by_session(state: FakePiper, session_id: str) -> str:
    return f"/v1/orgs/{state.dataset.org_id}/scenarios/runs/by-session/{quote(session_id, safe='')}"


def test_same_seed_gives_same_bytes_and_another_seed_does_not() -> None:
    first, again = FakeDataset.generate(seed=11, sessions=30), FakeDataset.generate(seed=11, sessions=30)
    other = FakeDataset.generate(seed=12, sessions=30)
    assert first.org_id == again.org_id != other.org_id
    assert first.session_ids == again.session_ids != other.session_ids
    assert [first.payload_bytes(s) for s in first.session_ids] == [again.payload_bytes(s) for s in again.session_ids]
    # A session's run does not depend on which other sessions exist.
    longer = FakeDataset.generate(seed=11, sessions=60)
    assert longer.session_ids[:30] == first.session_ids
    assert longer.payload_bytes(first.session_ids[7]) == first.payload_bytes(first.session_ids[7])
    # payload_kb changes the text, never the ids.
    small = FakeDataset.generate(seed=11, sessions=30, payload_kb=2.0)
    for session_id in first.session_ids:
        big_run, small_run = first.run_for(session_id), small.run_for(session_id)
        assert big_run is not None and small_run is not None
        assert _ids(big_run) == _ids(small_run)
        assert len(first.payload_bytes(session_id) or b"") >= len(small.payload_bytes(session_id) or b"")


def _ids(run: dict[str, Any]) -> list[str]:
    turns = run["turn_results"]
    return [run["id"], *(t["id"] for t in turns), *(c["id"] for t in turns for c in t["criteria_results"])]


def test_server_sends_the_dataset_bytes(state: FakePiper, client: httpx.Client) -> None:
    for session_id in state.dataset.session_ids[:10]:
        response = client.get(by_session(state, session_id))
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.content == state.dataset.payload_bytes(session_id)


def test_session_ids_are_unique_and_look_like_channel_ids() -> None:
    session_ids = FakeDataset.generate(seed=0, sessions=500).session_ids
    assert len(set(session_ids)) == 500
    assert any("/" in s for s in session_ids)
    assert any(" " in s for s in session_ids)
    assert any(not s.isascii() for s in session_ids)


def _check_run(run: dict[str, Any]) -> None:
    assert set(run) == RUN_KEYS
    status, turns = run["status"], run["turn_results"]
    assert status in {"pending", "running", "passed", "failed", "error"}
    if status == "pending":
        assert run["started_at"] is None and run["completed_at"] is None and turns == []
    elif status == "running":
        assert run["started_at"].endswith("Z") and run["completed_at"] is None
    else:
        assert run["started_at"].endswith("Z") and run["completed_at"] > run["started_at"]
    assert [t["turn_index"] for t in turns] == sorted(t["turn_index"] for t in turns)
    for position, turn in enumerate(turns):
        assert set(turn) == TURN_KEYS
        verdicts = [c["verdict"] for c in turn["criteria_results"]]
        assert turn["passed"] == ("FAIL" not in verdicts)
        if turn["stopped_early"]:
            assert position == len(turns) - 1 and not turn["passed"] and status == "failed"
        for criteria_result in turn["criteria_results"]:
            assert set(criteria_result) == CRITERIA_KEYS
    if status == "passed":
        assert all(t["passed"] for t in turns)
    if status == "failed":
        assert not all(t["passed"] for t in turns)


def test_by_session_payload_shape() -> None:
    dataset = FakeDataset.generate(seed=1, sessions=300)
    runs = [dataset.run_for(s) for s in dataset.session_ids]
    for run in runs:
        assert run is not None
        _check_run(run)
    statuses = {run["status"] for run in runs if run}
    assert statuses == {"pending", "running", "passed", "failed", "error"}
    assert any(t["stopped_early"] for run in runs if run for t in run["turn_results"])


def test_missing_or_wrong_token_is_401(state: FakePiper, client: httpx.Client) -> None:
    url = by_session(state, state.dataset.session_ids[0])
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer pat_wrong"}, {"Authorization": "pat_x"}):
        response = client.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid or expired token"}
    assert [r.auth_ok for r in state.requests] == [False, False, False]


def test_unknown_session_and_wrong_org_are_404(state: FakePiper, client: httpx.Client) -> None:
    response = client.get(by_session(state, "web-does-not-exist"))
    assert (response.status_code, response.json()) == (404, {"detail": "No scenario run found for session"})
    other_org = "/v1/orgs/00000000-0000-4000-8000-000000000000/scenarios/runs/by-session/x"
    response = client.get(other_org)
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


SPECIAL_IDS = [
    "slack/C04ABCD/1699999999.000100", "widget?ref=promo&n=1", "voice#call-8812", "50% off",
    "legacy%2Fchat-1", "whatsapp:+44 7700 900123", "web-café-01", "日本語/セッション", "a+b=c;d",
]


def test_special_session_ids_round_trip(state: FakePiper, client: httpx.Client) -> None:
    for session_id in SPECIAL_IDS:
        state.dataset.add_session(session_id)
        response = client.get(by_session(state, session_id))
        assert response.status_code == 200, session_id
        assert response.json() == state.dataset.run_for(session_id)
        assert state.requests[-1].session_id == session_id


def test_unencoded_slash_never_reaches_the_session_route(state: FakePiper, client: httpx.Client) -> None:
    state.dataset.add_session("slack/C04/1.2")
    response = client.get(f"/v1/orgs/{state.dataset.org_id}/scenarios/runs/by-session/slack/C04/1.2")
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    assert state.requests[-1].session_id is None


def test_scripted_faults_in_order(state: FakePiper, client: httpx.Client) -> None:
    session_id = state.dataset.session_ids[0]
    state.retry_after = "Wed, 21 Oct 2026 07:28:00 GMT"
    state.script(session_id, "429", "503", "html", "truncate", "401", "403", "502")
    url = by_session(state, session_id)
    response = client.get(url)
    assert response.status_code == 429 and response.headers["retry-after"] == state.retry_after
    assert client.get(url).status_code == 503
    response = client.get(url)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert b"<form" in response.content
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(url)
    assert [client.get(url).status_code for _ in range(4)] == [401, 403, 502, 200]
    assert state.session_hits[session_id] == 8
    assert [r.fault for r in state.requests] == ["429", "503", "html", "truncate", "401", "403", "502", None]


def test_script_rejects_unknown_faults(state: FakePiper) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        state.script("x", "418")


def _statuses(dataset: FakeDataset) -> list[int]:
    state = FakePiper(dataset, error_rate=0.3, rate_limit_rate=0.1, retry_after="0", fault_seed=9)
    headers = {"Authorization": f"Bearer {state.token}"}
    with serve(state) as base_url, httpx.Client(base_url=base_url, headers=headers) as http:
        statuses = []
        for session_id in dataset.session_ids[:5] * 4:
            try:
                statuses.append(http.get(by_session(state, session_id)).status_code)
            except httpx.TransportError:
                statuses.append(-1)
        return statuses


def test_throttle_at_numbers_session_requests_and_may_wait_for_requests_in_flight(state: FakePiper,
                                                                                   client: httpx.Client) -> None:
    urls = [by_session(state, session_id) for session_id in state.dataset.session_ids[:6]]
    state.throttle_at, state.retry_after = (2,), "7"
    statuses = [client.get(url).status_code for url in urls[:3]]
    assert statuses == [200, 429, 200] and client.get(urls[1]).headers.get("retry-after") is None
    state.throttle_at, state.throttle_min_in_flight = (5,), 2  # numbers 5 and 6 arrive one at a time
    assert [client.get(url).status_code for url in urls[:2]] == [200, 200], "a request alone is not throttled"
    state.latency_ms = 500  # two requests sent together are both in flight when the second arrives
    with ThreadPoolExecutor(2) as pool:
        together = sorted(pool.map(lambda url: client.get(url).status_code, urls[2:4]))
    assert together == [200, 429], "the 429 passed on to the first request with another in flight"
    state.latency_ms = 0
    assert [client.get(url).status_code for url in urls[4:6]] == [200, 200] and state.session_in_flight == 0


def test_random_faults_are_reproducible() -> None:
    dataset = FakeDataset.generate(seed=2, sessions=5)
    statuses = _statuses(dataset)
    assert statuses == _statuses(dataset)
    assert 200 in statuses and {429, 500, 502, 503, 504} & set(statuses)


def test_complete_pending_keeps_ids_and_finishes_the_run(state: FakePiper, client: httpx.Client) -> None:
    dataset = state.dataset
    dataset.add_session("web-pending", status="pending")
    dataset.add_session("web-running", status="running")
    before = {sid: client.get(by_session(state, sid)).json() for sid in ("web-pending", "web-running")}
    assert before["web-pending"]["status"] == "pending"
    dataset.complete_pending("web-pending")
    assert client.get(by_session(state, "web-running")).json() == before["web-running"]
    dataset.complete_pending()
    for session_id, old in before.items():
        new = client.get(by_session(state, session_id)).json()
        _check_run(new)
        assert new["id"] == old["id"] and new["status"] in {"passed", "failed"}
        assert new["completed_at"] is not None
        old_turn_ids = [t["id"] for t in old["turn_results"]]
        assert [t["id"] for t in new["turn_results"]][: len(old_turn_ids)] == old_turn_ids
    assert all(dataset.status_of(s) not in {"pending", "running"} for s in dataset.session_ids)


def test_set_payload_serves_exactly_that_json(state: FakePiper, client: httpx.Client) -> None:
    state.dataset.set_payload("ghost", [1, "two", None])
    state.dataset.set_payload(state.dataset.session_ids[0], {"id": None})
    assert client.get(by_session(state, "ghost")).content == b'[1,"two",null]'
    assert client.get(by_session(state, state.dataset.session_ids[0])).json() == {"id": None}


def test_sessions_list_pages_and_rejects_bad_paging(state: FakePiper, client: httpx.Client) -> None:
    url = f"/v1/orgs/{state.dataset.org_id}/sessions/"
    seen: list[str] = []
    created: list[str] = []
    for offset in range(0, 50, 15):
        body = client.get(url, params={"limit": 15, "offset": offset}).json()
        assert body["total"] == 40
        assert all(set(session) == SESSION_KEYS for session in body["sessions"])
        seen += [session["id"] for session in body["sessions"]]
        created += [session["created_at"] for session in body["sessions"]]
    assert sorted(seen) == sorted(state.dataset.session_ids), "every session once"
    assert created == sorted(created, reverse=True), "newest first (tests/test_fake_api_changes.py: other orders)"
    for params, name in (({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"limit": "x"}, "limit"),
                         ({"offset": -1}, "offset")):
        response = client.get(url, params=params)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", name]


def test_scenario_endpoints(state: FakePiper, client: httpx.Client) -> None:
    org = f"/v1/orgs/{state.dataset.org_id}"
    scenarios = client.get(f"{org}/scenarios").json()
    assert 8 <= len(scenarios) <= 12
    detail = client.get(f"{org}/scenarios/{scenarios[0]['id']}").json()
    assert len(detail["turns"]) == scenarios[0]["turn_count"]
    assert {"id", "question", "criteria_type", "order_index", "few_shot_examples"} == set(
        detail["turns"][0]["criteria"][0]
    )
    runs = [r for s in scenarios for r in client.get(f"{org}/scenarios/{s['id']}/runs").json()]
    assert sorted(r["session_id"] for r in runs) == sorted(state.dataset.session_ids)
    run = client.get(f"{org}/scenarios/runs/{runs[0]['id']}").json()
    by_session_run = client.get(by_session(state, runs[0]["session_id"])).json()
    assert {k: run[k] for k in by_session_run} == by_session_run
    assert {"agent_id", "session_id", "cost_summary", "error_message"} <= set(run)


def test_latency_and_slow_fault_are_applied(state: FakePiper, client: httpx.Client) -> None:
    session_id = state.dataset.session_ids[0]
    state.latency_ms = 120
    started = time.perf_counter()
    assert client.get(by_session(state, session_id)).status_code == 200
    assert time.perf_counter() - started >= 0.12
    state.latency_ms, state.slow_seconds = 0, 0.2
    state.script(session_id, "slow")
    started = time.perf_counter()
    assert client.get(by_session(state, session_id)).status_code == 200
    assert time.perf_counter() - started >= 0.2


def test_serve_stops_listening_on_exit() -> None:
    state = FakePiper(FakeDataset.generate(sessions=3))
    for _ in range(3):
        with serve(state) as base_url:
            port = urlsplit(base_url).port
            assert port is not None
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
