"""JSON shapes of the neighbouring endpoints (sessions, scenarios, run summaries, session events).

As docs/piper-api.md describes them.
"""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta
from typing import Any

import orjson

from connector.fake_api import _agent_usage
from connector.fake_api._build import Scenario, channel_of, iso, new_uuid
from connector.fake_api.data import FakeDataset, RunSummary


def query_error(name: str, raw: str, error_type: str, msg: str, ctx: dict[str, int] | None) -> dict[str, Any]:
    """A FastAPI (pydantic v2) validation error body for one bad query parameter."""
    error: dict[str, Any] = {"type": error_type, "loc": ["query", name], "msg": msg, "input": raw}
    if ctx is not None:
        error["ctx"] = ctx
    return {"detail": [error]}


def parse_int(name: str, raw: str | None, default: int, low: int, high: int | None) -> int | dict[str, Any]:
    """The query parameter as an int within [low, high], or the 422 body explaining why not."""
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        return query_error(
            name, raw, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", None
        )
    if value < low:
        return query_error(
            name, raw, "greater_than_equal", f"Input should be greater than or equal to {low}", {"ge": low}
        )
    if high is not None and value > high:
        return query_error(
            name, raw, "less_than_equal", f"Input should be less than or equal to {high}", {"le": high}
        )
    return value


def session_item(dataset: FakeDataset, session_id: str) -> dict[str, Any]:
    """One entry of GET /sessions/: the conversation a scenario run was tied to."""
    header = dataset.header(session_id)
    rng = random.Random(f"{dataset.seed}:{session_id}:session")
    channel_type, channel_name = channel_of(session_id)
    message_count = 2 * len(header.scenario.turns) + rng.randint(0, 3)
    created_at = dataset.created_at(session_id)
    drawn_update = created_at + timedelta(seconds=rng.randint(60, 900))  # about when its first run ended
    return {
        "id": session_id,
        "agent_id": header.agent.id,
        "agent_name": header.agent.name,
        "channel_id": new_uuid(random.Random(f"channel:{dataset.seed}:{channel_name}")),
        "channel_type": channel_type,
        "channel_name": channel_name,
        "message_count": message_count,
        "is_test": rng.random() < 0.1,
        "scenario_run_status": dataset.status_of(session_id) if dataset.has_run(session_id) else None,
        "created_at": iso(created_at),
        "updated_at": iso(dataset.updated_at(session_id) or drawn_update),
    }


def listed_sessions(dataset: FakeDataset, order: str) -> list[str]:
    """Every listed session id in the list's order: newest first (by `created_at`, then id), oldest
    first, or "unordered" (by a hash of the id: stable, but unrelated to time, as an API may do)."""
    ids = dataset.listed_ids()
    if order == "unordered":
        return sorted(ids, key=lambda sid: hashlib.blake2b(sid.encode(), digest_size=8).digest())
    keyed = sorted(ids, key=lambda sid: (dataset.created_at(sid), sid))
    return keyed if order == "oldest_first" else keyed[::-1]


def _last_run(dataset: FakeDataset, scenario: Scenario) -> dict[str, Any] | None:
    headers = [(dataset.header(sid), sid) for sid in dataset.session_ids]
    mine = [(header, sid) for header, sid in headers if header.scenario.id == scenario.id]
    if not mine:
        return None
    header, sid = max(mine, key=lambda pair: pair[0].started_at)
    return {"id": header.run_id, "status": dataset.status_of(sid), "started_at": iso(header.started_at)}


def scenario_item(dataset: FakeDataset, scenario: Scenario) -> dict[str, Any]:
    """One entry of GET /scenarios."""
    return {
        "id": scenario.id,
        "name": scenario.name,
        "description": scenario.description,
        "tags": list(scenario.tags),
        "created_by_user_id": scenario.created_by_user_id,
        "created_at": scenario.created_at,
        "updated_at": scenario.updated_at,
        "turn_count": len(scenario.turns),
        "last_run": _last_run(dataset, scenario),
    }


def scenario_detail(scenario: Scenario) -> dict[str, Any]:
    """GET /scenarios/{scenario_id}: the scenario with its turns and criteria."""
    return {
        "id": scenario.id,
        "name": scenario.name,
        "description": scenario.description,
        "tags": list(scenario.tags),
        "created_by_user_id": scenario.created_by_user_id,
        "created_at": scenario.created_at,
        "updated_at": scenario.updated_at,
        "turns": [
            {
                "id": turn.id,
                "order_index": turn.order_index,
                "user_message": turn.user_message,
                "required": turn.required,
                "criteria": [
                    {
                        "id": criterion.id,
                        "question": criterion.question,
                        "criteria_type": criterion.criteria_type,
                        "order_index": criterion.order_index,
                        "few_shot_examples": [
                            {"response": response, "verdict": verdict}
                            for response, verdict in criterion.few_shot_examples
                        ],
                    }
                    for criterion in turn.criteria
                ],
            }
            for turn in scenario.turns
        ],
    }


def run_summary(summary: RunSummary) -> dict[str, Any]:
    """One entry of GET /scenarios/{scenario_id}/runs."""
    header = summary.header
    return {
        "id": header.run_id,
        "agent_id": header.agent.id,
        "agent_name": header.agent.name,
        "status": summary.status,
        "started_at": summary.started_at,
        "completed_at": summary.completed_at,
        "passed_turns": summary.passed_turns,
        "total_turns": len(header.scenario.turns),
        "session_id": summary.session_id,
    }


def run_detail(dataset: FakeDataset, session_id: str) -> dict[str, Any]:
    """GET /scenarios/runs/{run_id}: the by-session payload plus agent, session, cost and error."""
    run = dataset.run_for(session_id) or {}
    summary = dataset.summary(session_id)
    error_message = None
    if summary.status == "error":
        error_message = "Agent endpoint returned HTTP 502 three times; run aborted."
    return {
        **run,
        "agent_id": summary.header.agent.id,
        "session_id": session_id,
        "cost_summary": {
            "input_tokens": summary.input_tokens,
            "output_tokens": summary.output_tokens,
            "total_tokens": summary.input_tokens + summary.output_tokens,
        },
        "error_message": error_message,
    }


def session_events(dataset: FakeDataset, session_id: str) -> bytes | None:
    """GET /responses/sessions/{session_id}/events: the agent's runs in a listed session; None answers 404."""
    override = dataset.events_override(session_id)
    if override is not None:
        return override
    if not dataset.is_listed(session_id):
        return None
    body = _agent_usage.session_events(dataset.seed, dataset.org_id, session_item(dataset, session_id),
                                       reruns=dataset.rerun_times(session_id))
    return orjson.dumps(body)
