"""The body of `GET /responses/sessions/{session_id}/events`: the agent's own runs in a session, with events.

Drawn from `random.Random(f"{seed}:{session_id}:agent-usage:{n}")` for the session's n-th agent run, so a
session's first runs never change: a session starts with 1 to 3 agent runs, and each re-run of its scenario
(`FakeDataset.rerun`) adds one, created when the re-run happened. A run's totals are the sums of its
`llm_call` events, and its cost follows from the model's price below, so the payload is consistent with
itself; the `session` object carries the same session as the sessions list.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta
from typing import Any

from connector.fake_api._build import iso, new_uuid

MODELS: dict[str, tuple[float, float]] = {
    # model -> (USD per million input tokens, per million output tokens): placeholders of a plausible size
    "gpt-4.1-mini": (0.40, 1.60),
    "claude-sonnet-4": (3.00, 15.00),
    "gemini-2.5-flash": (0.30, 2.50),
}


def first_run_count(seed: int, session_id: str) -> int:
    """How many agent runs a session has before any re-run of its scenario: 1 to 3."""
    return random.Random(f"{seed}:{session_id}:agent-usage").randint(1, 3)


def agent_run(seed: int, session_id: str, index: int, created: datetime) -> dict[str, Any]:
    """The session's `index`-th agent run (0-based), created at `created`, with its events and totals."""
    rng = random.Random(f"{seed}:{session_id}:agent-usage:{index}")
    run_id = new_uuid(rng)
    model = rng.choice(sorted(MODELS))
    input_price, output_price = MODELS[model]
    events: list[dict[str, Any]] = []
    moment = created
    totals = {"input": 0, "output": 0, "requests": 0, "cost": 0.0}

    def event(event_type: str, **fields: Any) -> None:
        nonlocal moment
        moment += timedelta(milliseconds=rng.randint(50, 4000))
        base: dict[str, Any] = {
            "id": new_uuid(rng), "run_id": run_id, "event_type": event_type, "created_at": iso(moment),
            "role": None, "content": None, "tool_name": None, "tool_call_id": None, "tool_arguments": None,
            "parent_tool_call_id": None, "reasoning_effort": None, "latency_ms": None, "error_code": None,
            "error_message": None, "model_name": None, "provider_name": None, "input_tokens": None,
            "output_tokens": None, "cache_read_tokens": None, "cache_write_tokens": None, "cost_usd": None,
            "code_executed": None, "printed_output": None,
        }
        events.append(base | fields)

    event("message", role="user", content="(the scenario's user message)")
    for call in range(rng.randint(1, 4)):
        tokens_in, tokens_out = rng.randint(400, 6000), rng.randint(40, 900)
        cost = round((tokens_in * input_price + tokens_out * output_price) / 1e6, 8)
        totals["input"] += tokens_in
        totals["output"] += tokens_out
        totals["requests"] += 1
        totals["cost"] += cost
        event("llm_call", model_name=model, provider_name=model.split("-")[0], input_tokens=tokens_in,
              output_tokens=tokens_out, cache_read_tokens=rng.randint(0, tokens_in // 2), cache_write_tokens=0,
              cost_usd=cost, latency_ms=rng.randint(200, 9000), reasoning_effort=rng.choice((None, "low", "medium")))
        if call == 0 and rng.random() < 0.5:
            call_id = f"call_{rng.getrandbits(40):010x}"
            event("tool_call", tool_name="lookup_order", tool_call_id=call_id, tool_arguments='{"order": "?"}')
            event("tool_result", tool_call_id=call_id, parent_tool_call_id=call_id, content="not found")
    event("message", role="assistant", content="(the agent's reply)")
    return {
        "id": run_id,
        "session_id": session_id,
        "created_at": iso(created),
        "updated_at": iso(moment),
        "model_name": model,
        "total_input_tokens": totals["input"],
        "total_output_tokens": totals["output"],
        "total_cost_usd": round(float(totals["cost"]), 8),
        "total_requests": totals["requests"],
        "events": events,
    }


def session_events(
    seed: int, org_id: str, listed: dict[str, Any], *, reruns: list[datetime]
) -> dict[str, Any]:
    """The events body of one session: `listed` is its sessions list item, `reruns` when its scenario was re-run."""
    session_id = str(listed["id"])
    user = hashlib.blake2b(f"{seed}:{session_id}".encode(), digest_size=4).hexdigest()
    created = datetime.fromisoformat(str(listed["created_at"]))
    starts = [created + timedelta(seconds=30 + 60 * n) for n in range(first_run_count(seed, session_id))]
    starts += reruns
    return {
        "session": {
            "session_id": session_id,
            "agent_id": listed["agent_id"],
            "organization_id": org_id,
            "channel_id": listed["channel_id"],
            "channel_external_session_id": f"ext-{session_id}",
            "channel_external_user_id": f"user-{user}",
            "is_test": listed["is_test"],
            "created_at": listed["created_at"],
            "updated_at": listed["updated_at"],
        },
        "runs": [agent_run(seed, session_id, index, start) for index, start in enumerate(starts)],
    }
