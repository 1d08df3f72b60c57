"""The simulated API changes as a live org does: list orders, sessions created and deleted, runs finished and re-run."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from connector.fake_api import FakeDataset, FakePiper, serve


@pytest.fixture
def state() -> FakePiper:
    return FakePiper(FakeDataset.generate(seed=4, sessions=30, runless_sessions=5))


@pytest.fixture
def client(state: FakePiper) -> Iterator[httpx.Client]:
    with serve(state) as base_url, httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {state.token}"}
    ) as http:
        yield http


def listing(state: FakePiper, client: httpx.Client, limit: int = 500) -> list[dict[str, object]]:
    body = client.get(f"/v1/orgs/{state.dataset.org_id}/sessions/", params={"limit": limit}).json()
    assert body["total"] == len(body["sessions"]) or limit < body["total"]
    return list(body["sessions"])


def by_session(state: FakePiper, client: httpx.Client, session_id: str) -> httpx.Response:
    return client.get(f"/v1/orgs/{state.dataset.org_id}/scenarios/runs/by-session/{quote(session_id, safe='')}")


def test_runless_sessions_are_listed_with_a_null_status_and_answer_404(state: FakePiper, client: httpx.Client) -> None:
    sessions = listing(state, client)
    runless = [s for s in sessions if s["scenario_run_status"] is None]
    assert {s["id"] for s in runless} == set(state.dataset.runless_ids) and len(runless) == 5
    assert not set(state.dataset.runless_ids) & set(state.dataset.session_ids)
    assert by_session(state, client, str(runless[0]["id"])).status_code == 404
    assert FakeDataset.generate(seed=4, sessions=30).session_ids == state.dataset.session_ids, "runs unchanged"


@pytest.mark.parametrize("order", ["newest_first", "oldest_first", "unordered"])
def test_every_order_lists_every_session_once(state: FakePiper, client: httpx.Client, order: str) -> None:
    state.list_order = order  # type: ignore[assignment]
    sessions = listing(state, client)
    created = [str(s["created_at"]) for s in sessions]
    assert sorted(str(s["id"]) for s in sessions) == sorted(state.dataset.listed_ids())
    if order == "newest_first":
        assert created == sorted(created, reverse=True)
    elif order == "oldest_first":
        assert created == sorted(created)
    else:
        assert created not in (sorted(created), sorted(created, reverse=True))


def test_an_unknown_order_is_refused() -> None:
    with pytest.raises(ValueError, match="list_order"):
        FakePiper(FakeDataset.generate(sessions=1), list_order="random")  # type: ignore[arg-type]


def test_a_created_session_is_the_newest_and_a_deleted_one_is_gone(state: FakePiper, client: httpx.Client) -> None:
    before = listing(state, client)
    state.dataset.add_session("web-brand-new")
    gone = state.dataset.session_ids[3]
    state.dataset.remove_session(gone)
    after = listing(state, client)
    assert after[0]["id"] == "web-brand-new" and str(after[0]["created_at"]) > str(before[0]["created_at"])
    assert gone not in {s["id"] for s in after} and by_session(state, client, gone).status_code == 404
    assert len(after) == len(before)


def test_churn_knobs_change_the_list_before_each_list_request(state: FakePiper, client: httpx.Client) -> None:
    state.sessions_created_per_list, state.sessions_deleted_per_list = 2, 1
    seen: list[int] = []
    state.on_list = lambda _state, number: seen.append(number)
    first = listing(state, client)
    second = listing(state, client)
    assert seen == [1, 2] and state.list_requests == 2
    assert len(state.created_ids) == 4 and len(state.deleted_ids) == 2
    assert len(second) == len(first) + 1
    assert {s["id"] for s in second} == set(state.dataset.listed_ids())
    assert not set(state.deleted_ids) & {s["id"] for s in second}


def test_a_finished_run_moves_updated_at(state: FakePiper, client: httpx.Client) -> None:
    pending = next(s for s in state.dataset.session_ids if state.dataset.status_of(s) in ("pending", "running"))
    old = next(s for s in listing(state, client) if s["id"] == pending)
    state.dataset.complete_pending(pending)
    new = next(s for s in listing(state, client) if s["id"] == pending)
    assert new["scenario_run_status"] in ("passed", "failed") and str(new["updated_at"]) > str(old["updated_at"])
    assert by_session(state, client, pending).json()["status"] == new["scenario_run_status"]


def test_a_rerun_gives_a_new_run_and_moves_updated_at_but_keeps_the_session(
    state: FakePiper, client: httpx.Client
) -> None:
    session_id = state.dataset.session_ids[0]
    old_item = next(s for s in listing(state, client) if s["id"] == session_id)
    old_run = by_session(state, client, session_id).json()
    state.dataset.rerun(session_id, status="failed")
    new_item = next(s for s in listing(state, client) if s["id"] == session_id)
    new_run = by_session(state, client, session_id).json()
    assert new_run["id"] != old_run["id"] and new_run["status"] == "failed"
    assert str(new_item["updated_at"]) > str(old_item["updated_at"])
    assert (new_item["created_at"], new_item["agent_id"]) == (old_item["created_at"], old_item["agent_id"])
    detail = client.get(f"/v1/orgs/{state.dataset.org_id}/scenarios/runs/{new_run['id']}")
    assert detail.status_code == 200 and detail.json()["session_id"] == session_id
    assert FakeDataset.generate(seed=4, sessions=30).run_for(session_id) == old_run, "generation 0 is unchanged"
