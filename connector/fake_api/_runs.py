"""How one session's scenario run is drawn: header first, then turn skeletons, then their text.

The order of draws is part of the contract of determinism: ids are drawn before any text, so
payload_kb changes the text of a run but never its ids, and a non-final run and its completed form
come from the same draws.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from connector.fake_api import _bank
from connector.fake_api._build import WINDOW, WINDOW_END, Agent, Scenario, join_prose, new_uuid, prose

# Minimum text lengths push runs with many criteria above their target, and pending or running runs
# show only part of their text; 0.95 balances the two so the mean over all sessions lands on
# payload_kb (measured: 11.95 KB over 20 seeds x 1,000 sessions at the default 12.0).
_SIZE_CALIBRATION = 0.95


@dataclass(frozen=True)
class RunHeader:
    """The first draws of a session's run: cheap to compute for every session at once."""

    run_id: str
    scenario: Scenario
    agent: Agent
    created_at: datetime
    started_at: datetime
    drawn_status: str
    eventual_outcome: str  # what a pending or running run ends as: "passed" or "failed"


def draw_header(rng: random.Random, scenarios: list[Scenario], agents: list[Agent]) -> RunHeader:
    """The first draws from a session's rng; generation continues from the same rng afterwards."""
    run_id = new_uuid(rng)
    scenario = scenarios[rng.randrange(len(scenarios))]
    agent = agents[rng.randrange(len(agents))]
    created = WINDOW_END - WINDOW + timedelta(seconds=rng.uniform(0, WINDOW.total_seconds() - 7200))
    started = created + timedelta(seconds=rng.randint(1, 90))
    status = rng.choices(("passed", "failed", "error", "pending", "running"), weights=(55, 28, 5, 5, 7))[0]
    outcome = "passed" if rng.random() < 0.65 else "failed"
    return RunHeader(run_id, scenario, agent, created, started, status, outcome)


def turn_skeletons(
    rng: random.Random, scenario: Scenario, outcome: str
) -> tuple[list[dict[str, Any]], list[float]]:
    """Turn results with verdicts and tokens but no text yet, and how long each turn took (s)."""
    turn_count = len(scenario.turns)
    fail_at = rng.randrange(turn_count)
    error_after = rng.randint(0, turn_count - 1)
    turns: list[dict[str, Any]] = []
    durations: list[float] = []
    for turn in scenario.turns:
        if outcome == "error" and turn.order_index > error_after:
            break
        criteria_results: list[dict[str, Any]] = []
        for criterion in turn.criteria:
            must_fail = outcome == "failed" and turn.order_index == fail_at and not criteria_results
            may_fail = outcome == "failed" and turn.order_index > fail_at
            if must_fail or (may_fail and rng.random() < 0.15):
                verdict = "FAIL"
            elif rng.random() < 0.02:
                verdict = rng.choice(("SKIPPED", "ERROR"))
            else:
                verdict = "PASS"
            if outcome == "error" and turn.order_index == error_after and criterion.order_index == 0:
                verdict = "ERROR"
            no_tokens = verdict not in ("PASS", "FAIL") or rng.random() < 0.01
            criteria_results.append({
                "id": new_uuid(rng),
                "criteria_id": criterion.id,
                "verdict": verdict,
                "criteria_question": None if rng.random() < 0.003 else criterion.question,
                "criteria_type": criterion.criteria_type,
                "critique": "",
                "evidence": "",
                "input_tokens": None if no_tokens else rng.randint(300, 3000),
                "output_tokens": None if no_tokens else rng.randint(50, 600),
            })
        passed = all(c["verdict"] != "FAIL" for c in criteria_results)
        stopped = not passed and turn.required
        turns.append({
            "id": new_uuid(rng),
            "turn_index": turn.order_index,
            "stopped_early": stopped,
            "passed": passed,
            "response_content": "",
            "criteria_results": criteria_results,
        })
        durations.append(rng.uniform(2, 45))
        if stopped:
            break
    return turns, durations


def fill_text(rng: random.Random, header: RunHeader, turns: list[dict[str, Any]], target: float) -> None:
    """Write response, critique and evidence text so the full run encodes to about target bytes."""
    criteria = [c for t in turns for c in t["criteria_results"]]
    skeleton = len(orjson.dumps({"id": header.run_id, "scenario_name": header.scenario.name, "t": turns}))
    budget = max(0.0, target * _SIZE_CALIBRATION - skeleton - 120)
    unit = budget / max(1, 4 * len(turns) + 3 * len(criteria))
    for turn in turns:
        sentences = prose(rng, _bank.RESPONSE_SENTENCES, max(60, int(4 * unit * rng.uniform(0.7, 1.3))))
        turn["response_content"] = "" if rng.random() < 0.005 else join_prose(sentences)
        for result in turn["criteria_results"]:
            if result["verdict"] == "SKIPPED":
                result["critique"], result["evidence"] = "Skipped: not applicable to this turn.", None
                continue
            if result["verdict"] == "ERROR":
                result["critique"] = "Judge call failed: upstream model timed out after 30 s."
                result["evidence"] = None
                continue
            critique = prose(rng, _bank.CRITIQUE_SENTENCES, max(60, int(2 * unit * rng.uniform(0.7, 1.3))))
            result["critique"] = join_prose(critique)
            start = rng.randrange(len(sentences))
            quoted = sentences[start : start + max(1, int(unit / 90))]
            prefix = _bank.evidence_prefix(rng.randrange(8))
            result["evidence"] = None if rng.random() < 0.01 else f'{prefix}"{" ".join(quoted)}"'
