"""Deterministic synthetic Piper data: scenarios, sessions and their scenario runs for one seed.

Each session's run is drawn from its own random.Random(f"{seed}:{session_id}"), so one session's
payload never depends on which other sessions exist or in what order they were asked for.

The dataset also changes the way a live org does, for the sync's tests: sessions are created
(`add_session`, `add_runless_session`) and deleted (`remove_session`), runs finish (`complete_pending`)
and are re-run (`rerun`: a new run id and new results; one more agent run on the events endpoint). Each
change moves the session's `updated_at` to the dataset's clock, which starts at `WINDOW_END` (after every
generated session) and ticks one second per change; a created session's `created_at` is that clock too,
so it is the newest.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from connector.fake_api._build import (
    WINDOW_END,
    Agent,
    Scenario,
    build_agents,
    build_scenarios,
    build_session_ids,
    iso,
    new_uuid,
)
from connector.fake_api._runs import RunHeader, draw_header, fill_text, turn_skeletons

FINAL_STATUSES = frozenset({"passed", "failed", "error"})
NON_FINAL_STATUSES = frozenset({"pending", "running"})
CACHE_SIZE = 4096


@dataclass(frozen=True)
class RunSummary:
    """What the list endpoints say about a run, without its turns."""

    header: RunHeader
    session_id: str
    status: str
    started_at: str | None
    completed_at: str | None
    passed_turns: int
    input_tokens: int
    output_tokens: int


@dataclass(eq=False, repr=False)
class FakeDataset:
    """Scenarios, sessions and scenario runs for one seed; mutable only through its methods."""

    seed: int
    payload_kb: float
    org_id: str
    session_ids: list[str]
    scenarios: list[Scenario]
    agents: list[Agent]
    runless_ids: list[str] = field(default_factory=list)  # listed sessions that have no scenario run
    _known: set[str] = field(init=False, repr=False)
    _runless: set[str] = field(init=False, repr=False)
    _generation: dict[str, int] = field(init=False, repr=False, default_factory=dict)  # re-runs of a session
    _created: dict[str, datetime] = field(init=False, repr=False, default_factory=dict)
    _updated: dict[str, datetime] = field(init=False, repr=False, default_factory=dict)
    _clock: datetime = field(init=False, repr=False, default=WINDOW_END)
    version: int = field(init=False, repr=False, default=0)  # counts changes, so views of the list can be cached
    _forced: dict[str, str] = field(init=False, repr=False, default_factory=dict)
    _completed: set[str] = field(init=False, repr=False, default_factory=set)
    _overrides: dict[str, bytes] = field(init=False, repr=False, default_factory=dict)
    _events_overrides: dict[str, bytes] = field(init=False, repr=False, default_factory=dict)
    _rerun_times: dict[str, list[datetime]] = field(init=False, repr=False, default_factory=dict)
    _headers: dict[str, RunHeader] = field(init=False, repr=False, default_factory=dict)
    _encoded: OrderedDict[str, bytes] = field(init=False, repr=False, default_factory=OrderedDict)
    _summaries: dict[str, RunSummary] = field(init=False, repr=False, default_factory=dict)
    _run_index: dict[str, str] = field(init=False, repr=False, default_factory=dict)
    _lock: threading.RLock = field(init=False, repr=False, default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self._known = set(self.session_ids)
        self._runless = set(self.runless_ids)

    def __repr__(self) -> str:
        return (
            f"FakeDataset(seed={self.seed}, sessions={len(self.session_ids)}, "
            f"payload_kb={self.payload_kb}, org_id={self.org_id!r})"
        )

    @classmethod
    def generate(
        cls, seed: int = 0, sessions: int = 100, *, payload_kb: float = 12.0, runless_sessions: int = 0
    ) -> FakeDataset:
        """The dataset for seed: the same arguments always give the same ids, text and bytes.

        `runless_sessions` more sessions are listed with `scenario_run_status` null (by-session 404);
        they never change the sessions that have runs.
        """
        org_rng = random.Random(f"org:{seed}")
        session_ids = build_session_ids(random.Random(f"sessions:{seed}"), sessions)
        taken = set(session_ids)
        candidates = build_session_ids(random.Random(f"runless:{seed}"), runless_sessions + sessions)
        return cls(
            seed=seed,
            payload_kb=payload_kb,
            org_id=new_uuid(org_rng),
            session_ids=session_ids,
            scenarios=build_scenarios(random.Random(f"scenarios:{seed}")),
            agents=build_agents(random.Random(f"agents:{seed}")),
            runless_ids=[sid for sid in candidates if sid not in taken][:runless_sessions],
        )

    # -- reading ---------------------------------------------------------------------------------

    def is_listed(self, session_id: str) -> bool:
        """Whether the sessions list shows session_id right now."""
        return session_id in self._known or session_id in self._runless

    def has_run(self, session_id: str) -> bool:
        """Whether session_id has a generated run (set_payload overrides not counted)."""
        return session_id in self._known

    def listed_ids(self) -> list[str]:
        """Every session the sessions list shows (with a run or not), in no particular order."""
        with self._lock:
            return [*self.session_ids, *self.runless_ids]

    def created_at(self, session_id: str) -> datetime:
        """When a listed session was created."""
        with self._lock:
            created = self._created.get(session_id)
        return created if created is not None else self.header(session_id).created_at

    def updated_at(self, session_id: str) -> datetime | None:
        """When a listed session last changed because of this dataset (None: never; the listing draws one)."""
        with self._lock:
            return self._updated.get(session_id)

    def run_for(self, session_id: str) -> dict[str, Any] | None:
        """The by-session payload of session_id's generated run, or None for an unknown session.

        A set_payload override is what the server sends, but it is not a run: see payload_bytes.
        """
        encoded = self._generated_bytes(session_id)
        return None if encoded is None else dict(orjson.loads(encoded))

    def payload_bytes(self, session_id: str) -> bytes | None:
        """The exact body the by-session endpoint sends for session_id, or None to answer 404."""
        with self._lock:
            override = self._overrides.get(session_id)
        return override if override is not None else self._generated_bytes(session_id)

    def rerun_times(self, session_id: str) -> list[datetime]:
        """When the session's scenario was re-run (`rerun`), oldest first; each re-run adds an agent run."""
        with self._lock:
            return list(self._rerun_times.get(session_id, ()))

    def events_override(self, session_id: str) -> bytes | None:
        """The body `set_events` gave the session's events endpoint, or None to serve the generated one."""
        with self._lock:
            return self._events_overrides.get(session_id)

    def header(self, session_id: str) -> RunHeader:
        """Run id, scenario, agent and start time of a known session's (latest) run."""
        with self._lock:
            cached = self._headers.get(session_id)
            if cached is None:
                drawn = draw_header(random.Random(self._run_key(session_id)), self.scenarios, self.agents)
                first = drawn
                if self._generation.get(session_id):  # a re-run: same session (agent, creation), new run
                    first = draw_header(random.Random(f"{self.seed}:{session_id}"), self.scenarios, self.agents)
                created = self._created.get(session_id, first.created_at)  # a session created later starts later
                started = created + (first.started_at - first.created_at)
                if self._generation.get(session_id):
                    started = self._updated.get(session_id, started)
                cached = dataclasses.replace(drawn, agent=first.agent, created_at=created, started_at=started)
                self._headers[session_id] = cached
            return cached

    def _run_key(self, session_id: str) -> str:
        """The seed of a session's run: a re-run draws a different run from the same session."""
        generation = self._generation.get(session_id, 0)
        return f"{self.seed}:{session_id}" if not generation else f"{self.seed}:{session_id}:rerun-{generation}"

    def status_of(self, session_id: str) -> str:
        """The status a known session's run has right now."""
        header = self.header(session_id)
        with self._lock:
            status = self._forced.get(session_id, header.drawn_status)
            if status in NON_FINAL_STATUSES and session_id in self._completed:
                return header.eventual_outcome
            return status

    def summary(self, session_id: str) -> RunSummary:
        """Status, timestamps, turn and token counts of a known session's run."""
        with self._lock:
            cached = self._summaries.get(session_id)
            if cached is None:
                self._generated_bytes(session_id)
                cached = self._summaries[session_id]
            return cached

    def session_for_run(self, run_id: str) -> str | None:
        """The session whose run has this id, or None."""
        with self._lock:
            if len(self._run_index) != len(self.session_ids):
                self._run_index = {self.header(sid).run_id: sid for sid in self.session_ids}
            return self._run_index.get(run_id)

    def scenario(self, scenario_id: str) -> Scenario | None:
        """The scenario with this id, or None."""
        return next((s for s in self.scenarios if s.id == scenario_id), None)

    # -- changing --------------------------------------------------------------------------------

    def complete_pending(self, session_id: str | None = None) -> None:
        """Finish pending and running runs (one session, or all): same run and turn ids, final status."""
        with self._lock:
            targets = self.session_ids if session_id is None else [session_id]
            for sid in targets:
                if sid not in self._known:
                    raise KeyError(sid)
                if self.status_of(sid) in NON_FINAL_STATUSES:
                    self._completed.add(sid)
                    self._touch(sid)
                    self._invalidate(sid)

    def add_session(self, session_id: str, *, status: str | None = None) -> None:
        """Register session_id with a generated run; status forces the run's status (any string).

        A new session is created now (the dataset's clock); forcing the status of a known one changes it now.
        """
        with self._lock:
            if session_id not in self._known:
                was_runless = session_id in self._runless
                created = self.created_at(session_id) if was_runless else self._tick()
                self._known.add(session_id)
                self.session_ids.append(session_id)
                if was_runless:  # its first scenario run
                    self._runless.discard(session_id)
                    self.runless_ids.remove(session_id)
                self._created.setdefault(session_id, created)
            if status is not None:
                self._forced[session_id] = status
                self._completed.discard(session_id)
            self._touch(session_id)
            self._invalidate(session_id)

    def add_runless_session(self, session_id: str) -> None:
        """Create a listed session without a scenario run (its by-session request answers 404)."""
        with self._lock:
            if session_id in self._known or session_id in self._runless:
                raise ValueError(f"session {session_id!r} exists already")
            self._runless.add(session_id)
            self.runless_ids.append(session_id)
            self._created[session_id] = self._tick()
            self._touch(session_id)

    def remove_session(self, session_id: str) -> None:
        """Delete a session: the list no longer shows it and its by-session request answers 404."""
        with self._lock:
            if session_id in self._known:
                self._known.discard(session_id)
                self.session_ids.remove(session_id)
                self._invalidate(session_id)
                self._run_index.clear()
            elif session_id in self._runless:
                self._runless.discard(session_id)
                self.runless_ids.remove(session_id)
            else:
                raise KeyError(session_id)
            self.version += 1

    def rerun(self, session_id: str, *, status: str | None = None) -> None:
        """Run the session's scenario again: a new run id and new results; `status` forces the new run's status."""
        with self._lock:
            if session_id not in self._known:
                raise KeyError(session_id)
            self._generation[session_id] = self._generation.get(session_id, 0) + 1
            self._completed.discard(session_id)
            self._forced.pop(session_id, None)
            if status is not None:
                self._forced[session_id] = status
            self._touch(session_id)
            self._rerun_times.setdefault(session_id, []).append(self._updated[session_id])
            self._headers.pop(session_id, None)
            self._invalidate(session_id)
            self._run_index.clear()

    def _tick(self) -> datetime:
        self._clock += timedelta(seconds=1)
        return self._clock

    def _touch(self, session_id: str) -> None:
        """The session changed now: its `updated_at` moves (and the list's version with it)."""
        self._updated[session_id] = self._tick()
        self.version += 1

    def set_payload(self, session_id: str, payload: object) -> None:
        """Make the by-session endpoint answer 200 with exactly this JSON value for session_id."""
        encoded = orjson.dumps(payload)
        with self._lock:
            self._overrides[session_id] = encoded

    def set_events(self, session_id: str, payload: object) -> None:
        """Make the session's events endpoint answer 200 with exactly this JSON value (a known session or not)."""
        encoded = orjson.dumps(payload)
        with self._lock:
            self._events_overrides[session_id] = encoded

    def set_body(self, session_id: str, body: bytes) -> None:
        """Make the by-session endpoint answer 200 `application/json` with exactly these bytes (valid or not)."""
        with self._lock:
            self._overrides[session_id] = body

    def replace_scenario(self, scenario: Scenario) -> None:
        """Serve a new definition of the scenario with this id (an edit in Piper: give it a later updated_at).

        Runs already served stay as they were; runs generated from now on follow the new definition.
        """
        with self._lock:
            index = next((i for i, s in enumerate(self.scenarios) if s.id == scenario.id), None)
            if index is None:
                raise KeyError(scenario.id)
            self.scenarios[index] = scenario

    # -- generation ------------------------------------------------------------------------------

    def _invalidate(self, session_id: str) -> None:
        self._encoded.pop(session_id, None)
        self._summaries.pop(session_id, None)

    def _generated_bytes(self, session_id: str) -> bytes | None:
        if session_id not in self._known:
            return None
        with self._lock:
            encoded = self._encoded.get(session_id)
            if encoded is not None:
                self._encoded.move_to_end(session_id)
                return encoded
            run, summary = self._generate(session_id)
            encoded = orjson.dumps(run)
            self._encoded[session_id] = encoded
            self._summaries[session_id] = summary
            if len(self._encoded) > CACHE_SIZE:
                self._encoded.popitem(last=False)
            return encoded

    def _generate(self, session_id: str) -> tuple[dict[str, Any], RunSummary]:
        rng = random.Random(self._run_key(session_id))
        draw_header(rng, self.scenarios, self.agents)  # the same draws as the header, so the rest follows them
        header = self.header(session_id)
        status = self.status_of(session_id)
        if status in NON_FINAL_STATUSES:
            outcome = header.eventual_outcome
        else:
            outcome = status if status in FINAL_STATUSES else "error"
        turns, durations = turn_skeletons(rng, header.scenario, outcome)
        shown = int(rng.random() * len(turns))  # turns a running run has finished so far
        fill_text(rng, header, turns, self.payload_kb * 1024 * rng.uniform(0.55, 1.45))

        started_at: str | None = iso(header.started_at)
        completed_at: str | None = iso(header.started_at + timedelta(seconds=sum(durations) + 2))
        if status == "pending":
            started_at, completed_at, turns = None, None, []
        elif status == "running":
            completed_at, turns = None, turns[:shown]
        run = {
            "id": header.run_id,
            "scenario_id": header.scenario.id,
            "scenario_name": header.scenario.name,
            "status": status,
            "started_at": started_at,
            "completed_at": completed_at,
            "turn_results": turns,
        }
        criteria = [c for t in turns for c in t["criteria_results"]]
        summary = RunSummary(
            header=header, session_id=session_id, status=status, started_at=started_at,
            completed_at=completed_at, passed_turns=sum(1 for t in turns if t["passed"]),
            input_tokens=sum(c["input_tokens"] or 0 for c in criteria),
            output_tokens=sum(c["output_tokens"] or 0 for c in criteria),
        )
        return run, summary


