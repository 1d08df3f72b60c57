"""The simulated Piper API as a Starlette app, with knobs for latency, faults and request recording.

Routing is done on the raw request path, because the session id is one percent-encoded segment and
the decoded path would turn an encoded %2F inside it into a path separator.

The sessions list changes while it is read when asked to: `on_list` runs before each list request
is answered (it may change the dataset), and `sessions_created_per_list` / `sessions_deleted_per_list`
create and delete that many sessions before each list request, chosen from `fault_seed`.

A deterministic 429: `throttle_at` names request numbers (1-based, over every request of a session's run
or events, in the order they arrive) answered 429 with `Retry-After: retry_after`, whatever else is set.
With `throttle_min_in_flight` above 1, a numbered request that arrives while fewer session requests are being
answered (itself included) passes its 429 on to the next one that arrives with that many, so a test of clients
sending at once can throttle a moment at which they are. Each recorded request carries when it arrived and
when it was answered (`time.monotonic` of the server).
"""

from __future__ import annotations

import asyncio
import hmac
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from connector.fake_api import _bank, _views
from connector.fake_api.data import FakeDataset

ListOrder = Literal["newest_first", "oldest_first", "unordered"]
LIST_ORDERS: tuple[ListOrder, ...] = ("newest_first", "oldest_first", "unordered")
FAULTS = frozenset({"400", "429", "500", "502", "503", "504", "401", "403", "truncate", "html", "slow"})
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, and what it answered."""

    method: str
    raw_path: str  # still percent-encoded, without the query string
    query: str
    session_id: str | None  # decoded, for the by-session endpoint only
    auth_ok: bool
    status: int
    fault: str | None = None  # the scripted or random fault that shaped the answer
    received_at: float = 0.0  # time.monotonic() when the request arrived
    answered_at: float = 0.0  # time.monotonic() when its answer was ready


@dataclass(eq=False)
class FakePiper:
    """Mutable state of one simulated Piper server: its data, its knobs and what it has seen."""

    dataset: FakeDataset
    token: str = "pat_fake_demo_token"
    latency_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: str = "1"
    truncate_rate: float = 0.0
    fault_seed: int = 0
    slow_seconds: float = 2.0
    echo_authorization: bool = False  # a hostile server: JSON errors, critiques, agent model names quote it
    list_order: ListOrder = "newest_first"  # the sessions list's order (the API documents none)
    on_list: Callable[[FakePiper, int], None] | None = field(default=None, repr=False)  # (state, list request no.)
    sessions_created_per_list: int = 0
    sessions_deleted_per_list: int = 0
    throttle_at: tuple[int, ...] = ()  # session request numbers answered 429 (see the module docstring)
    throttle_min_in_flight: int = 1  # a throttled request's least session requests in flight on arrival
    requests: list[RecordedRequest] = field(default_factory=list, repr=False)
    list_requests: int = field(default=0, repr=False)
    session_requests: int = field(default=0, repr=False)  # requests of a session's run or events, counted
    session_in_flight: int = field(default=0, repr=False)  # of those, how many are being answered now
    _throttles_due: int = field(default=0, repr=False)  # numbered by throttle_at, not yet answered 429
    created_ids: list[str] = field(default_factory=list, repr=False)  # by sessions_created_per_list
    deleted_ids: list[str] = field(default_factory=list, repr=False)  # by sessions_deleted_per_list
    session_hits: Counter[str] = field(default_factory=Counter, repr=False)
    _path_hits: Counter[str] = field(default_factory=Counter, repr=False)
    _scripts: dict[str, deque[str]] = field(default_factory=dict, repr=False)
    _path_scripts: dict[str, deque[str]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ordered: tuple[tuple[int, str], list[str]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.list_order not in LIST_ORDERS:
            raise ValueError(f"list_order must be one of {', '.join(LIST_ORDERS)}, not {self.list_order!r}")

    def listed_sessions(self) -> list[str]:
        """The session ids the list shows now, in its order (cached until the dataset changes)."""
        key = (self.dataset.version, self.list_order)
        cached = self._ordered
        if cached is None or cached[0] != key:
            cached = self._ordered = (key, _views.listed_sessions(self.dataset, self.list_order))
        return cached[1]

    def before_list_request(self) -> None:
        """Count a list request and apply the changes that happen between two of them."""
        with self._lock:
            self.list_requests += 1
            number = self.list_requests
        rng = random.Random(f"churn:{self.fault_seed}:{number}")
        for _ in range(self.sessions_deleted_per_list):
            listed = self.dataset.listed_ids()
            if listed:
                victim = rng.choice(listed)
                self.dataset.remove_session(victim)
                self.deleted_ids.append(victim)
        for index in range(self.sessions_created_per_list):
            new_id = f"web-churn-{self.fault_seed}-{number}-{index}"
            self.dataset.add_session(new_id)
            self.created_ids.append(new_id)
        if self.on_list is not None:
            self.on_list(self, number)

    def script(self, session_id: str, *faults: str) -> None:
        """Queue faults for session_id: each by-session request for it takes the next one."""
        unknown = [fault for fault in faults if fault not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; expected some of {sorted(FAULTS)}")
        with self._lock:
            self._scripts.setdefault(session_id, deque()).extend(faults)

    def script_path(self, raw_path: str, *faults: str) -> None:
        """Queue faults for another endpoint (a list, a scenario): each request of this raw path takes the next one."""
        unknown = [fault for fault in faults if fault not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; expected some of {sorted(FAULTS)}")
        with self._lock:
            self._path_scripts.setdefault(raw_path, deque()).extend(faults)

    def arrive(self) -> int:
        """Count a session request (a session's run or events) that has arrived; how many are in flight with it."""
        with self._lock:
            self.session_in_flight += 1
            return self.session_in_flight

    def leave(self) -> None:
        """Count a session request answered."""
        with self._lock:
            self.session_in_flight -= 1

    def next_fault(self, key: str, *, session: bool, in_flight: int | None = None) -> str | None:
        """Count a request for key (a session id or a raw path) and draw the fault it meets, if any.

        `in_flight`: for a session request (one that `throttle_at` numbers), the session requests in flight when
        it arrived, itself included (`arrive`).
        """
        with self._lock:
            if in_flight is not None:
                self.session_requests += 1
                self._throttles_due += self.session_requests in self.throttle_at
                if self._throttles_due and in_flight >= self.throttle_min_in_flight:
                    self._throttles_due -= 1
                    (self.session_hits if session else self._path_hits)[key] += 1
                    return "429"
            hits = self.session_hits if session else self._path_hits
            hits[key] += 1
            queue = (self._scripts if session else self._path_scripts).get(key)
            if queue:
                return queue.popleft()
            number = hits[key]
        draw = random.Random(f"{self.fault_seed}:{key}:{number}")
        roll = draw.random()
        if roll < self.rate_limit_rate:
            return "429"
        if roll < self.rate_limit_rate + self.error_rate:
            return draw.choice(("500", "502", "503", "504"))
        if roll < self.rate_limit_rate + self.error_rate + self.truncate_rate:
            return "truncate"
        return None

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


class TruncatedResponse(Response):
    """A 200 whose Content-Length promises more bytes than are sent before the connection closes."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content, status_code=200, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        partial = self.body[: max(1, len(self.body) // 2)]
        # Returning without more_body=False makes uvicorn close the transport mid-body.
        await send({"type": "http.response.body", "body": partial, "more_body": True})


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def _detail(text: str, echo: str | None) -> dict[str, object]:
    return {"detail": text} if echo is None else {"detail": text, "request_headers": {"authorization": echo}}


def _echoed_in_critiques(payload: bytes, echo: str) -> bytes:
    """The run with `echo` quoted in every criteria result's critique (left alone if it is no run)."""
    try:
        run = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    if not isinstance(run, dict):
        return payload
    for turn_result in run.get("turn_results") or []:
        for criteria_result in (turn_result.get("criteria_results") or []) if isinstance(turn_result, dict) else []:
            if isinstance(criteria_result, dict):
                criteria_result["critique"] = f"{criteria_result.get('critique') or ''} [judge saw: {echo}]"
    return orjson.dumps(run)


def _echoed_in_model_names(payload: bytes, echo: str) -> bytes:
    """The session's events with `echo` quoted in every agent run's model name (left alone if they are no events)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    runs = body.get("runs") if isinstance(body, dict) else None
    for run in runs if isinstance(runs, list) else []:
        if isinstance(run, dict):
            run["model_name"] = f"{run.get('model_name') or ''} [saw: {echo}]"
    return orjson.dumps(body)


def _html(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="text/html; charset=utf-8")


def _is_session_request(segments: list[str]) -> bool:
    """A request of a session's run or events (what `throttle_at` numbers), by its raw path's segments."""
    match segments[4:]:
        case ["scenarios", "runs", "by-session", encoded] | ["responses", "sessions", encoded, "events"]:
            return bool(encoded)
    return False


class _Api:
    """Request handling bound to one FakePiper."""

    def __init__(self, state: FakePiper) -> None:
        self.state = state

    async def handle(self, request: Request) -> Response:
        state = self.state
        raw_path = bytes(request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1")
        auth_ok = self._auth_ok(request)
        echo = request.headers.get("authorization", "") if state.echo_authorization else None
        received_at = time.monotonic()
        segments = raw_path.split("/")
        in_flight = state.arrive() if _is_session_request(segments) else None
        try:
            session_id, fault, response = await self._answer(request, raw_path, segments, auth_ok, echo, in_flight)
        finally:
            if in_flight is not None:
                state.leave()
        state.record(RecordedRequest(
            method=request.method, raw_path=raw_path, query=request.url.query, session_id=session_id,
            auth_ok=auth_ok, status=response.status_code, fault=fault, received_at=received_at,
            answered_at=time.monotonic(),
        ))
        return response

    async def _answer(self, request: Request, raw_path: str, segments: list[str], auth_ok: bool, echo: str | None,
                      in_flight: int | None) -> tuple[str | None, str | None, Response]:
        """The session id asked for (by-session only), the fault met, and the answer."""
        state = self.state
        if state.latency_ms > 0:
            await asyncio.sleep(state.latency_ms / 1000)
        if segments[:3] != ["", "v1", "orgs"] or len(segments) < 5:
            return None, None, _json(404, {"detail": "Not Found"})
        if request.method not in ("GET", "HEAD"):
            return None, None, _json(405, {"detail": "Method Not Allowed"})
        if not auth_ok:
            return None, None, _json(401, {"detail": "Invalid or expired token"})
        if unquote(segments[3]) != state.dataset.org_id:
            return None, None, _json(404, {"detail": "Not Found"})
        match segments[4:]:
            case ["scenarios", "runs", "by-session", encoded] if encoded:
                session_id = unquote(encoded)
                fault = state.next_fault(session_id, session=True, in_flight=in_flight)
                return session_id, fault, await self._by_session(session_id, fault, echo)
            case ["responses", "sessions", encoded, "events"] if encoded:
                fault = state.next_fault(raw_path, session=False, in_flight=in_flight)
                return None, fault, await self._events(unquote(encoded), fault, echo)
            case rest:
                fault = state.next_fault(raw_path, session=False)
                response = await self._faulted(fault, echo) or self._neighbour(rest, request)
                if fault == "truncate":
                    response = TruncatedResponse(bytes(response.body))
                return None, fault, response

    def _auth_ok(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self.state.token.encode())

    async def _faulted(self, fault: str | None, echo: str | None = None) -> Response | None:
        """The answer a fault replaces the real one with; None when the real answer should go out.

        `echo`, when set, is quoted in the JSON error bodies, as a debugging proxy might.
        """
        match fault:
            case "400":
                return _json(400, _detail("Bad Request", echo))
            case "429":
                return _json(429, {"detail": "Rate limit exceeded"}, {"Retry-After": self.state.retry_after})
            case "500":
                return _json(500, _detail("Internal Server Error", echo))
            case "502":
                return _html(502, _bank.gateway_page(502, "Bad Gateway"))
            case "503":
                return _json(503, _detail("Service temporarily unavailable", echo))
            case "504":
                return _html(504, _bank.gateway_page(504, "Gateway Time-out"))
            case "401":
                return _json(401, {"detail": "Invalid or expired token"})
            case "403":
                return _json(403, {"detail": "Not enough permissions"})
            case "html":
                return _html(200, _bank.LOGIN_PAGE_HTML)
            case "slow":
                await asyncio.sleep(self.state.slow_seconds)
        return None

    async def _by_session(self, session_id: str, fault: str | None, echo: str | None = None) -> Response:
        faulted = await self._faulted(fault, echo)
        if faulted is not None:
            return faulted
        payload = self.state.dataset.payload_bytes(session_id)
        if payload is not None and echo is not None:
            payload = _echoed_in_critiques(payload, echo)
        if fault == "truncate":
            return TruncatedResponse(payload or b'{"detail": "No scenario run found for session"}')
        if payload is None:
            return _json(404, {"detail": "No scenario run found for session"})
        return Response(payload, media_type="application/json")

    async def _events(self, session_id: str, fault: str | None, echo: str | None) -> Response:
        """The session's events (its agent runs), with the faults and 429s of every other endpoint."""
        faulted = await self._faulted(fault, echo)
        if faulted is not None:
            return faulted
        body = _views.session_events(self.state.dataset, session_id)
        if body is not None and echo is not None:
            body = _echoed_in_model_names(body, echo)
        if fault == "truncate":
            return TruncatedResponse(body or b'{"detail": "Session not found"}')
        if body is None:
            return _json(404, {"detail": "Session not found"})
        return Response(body, media_type="application/json")

    def _neighbour(self, rest: list[str], request: Request) -> Response:
        dataset = self.state.dataset
        match rest:
            case ["sessions"] | ["sessions", ""]:
                page = self._page(request)
                if isinstance(page, Response):
                    return page
                limit, offset = page
                self.state.before_list_request()
                listed = self.state.listed_sessions()
                sessions = [_views.session_item(dataset, sid) for sid in listed[offset : offset + limit]]
                return _json(200, {"sessions": sessions, "total": len(listed)})
            case ["scenarios"] | ["scenarios", ""]:
                page = self._page(request)
                if isinstance(page, Response):
                    return page
                limit, offset = page
                tags = set(request.query_params.getlist("tags"))
                scenarios = [s for s in dataset.scenarios if not tags or tags & set(s.tags)]
                return _json(200, [_views.scenario_item(dataset, s) for s in scenarios[offset : offset + limit]])
            case ["scenarios", "runs", run_id] if run_id:
                session_id = dataset.session_for_run(unquote(run_id))
                if session_id is None:
                    return _json(404, {"detail": "Scenario run not found"})
                return _json(200, _views.run_detail(dataset, session_id))
            case ["scenarios", scenario_id] if scenario_id:
                scenario = dataset.scenario(unquote(scenario_id))
                if scenario is None:
                    return _json(404, {"detail": "Scenario not found"})
                return _json(200, _views.scenario_detail(scenario))
            case ["scenarios", scenario_id, "runs"]:
                page = self._page(request)
                if isinstance(page, Response):
                    return page
                limit, offset = page
                scenario = dataset.scenario(unquote(scenario_id))
                if scenario is None:
                    return _json(404, {"detail": "Scenario not found"})
                ids = [sid for sid in dataset.session_ids if dataset.header(sid).scenario.id == scenario.id]
                runs = [_views.run_summary(dataset.summary(sid)) for sid in ids[offset : offset + limit]]
                return _json(200, runs)
        return _json(404, {"detail": "Not Found"})

    @staticmethod
    def _page(request: Request) -> tuple[int, int] | Response:
        """(limit, offset) from the query string, or the 422 answer for a bad one."""
        limit = _views.parse_int("limit", request.query_params.get("limit"), 100, 1, 500)
        if isinstance(limit, dict):
            return _json(422, limit)
        offset = _views.parse_int("offset", request.query_params.get("offset"), 0, 0, None)
        if isinstance(offset, dict):
            return _json(422, offset)
        return limit, offset


def create_app(state: FakePiper) -> Starlette:
    """The ASGI app serving state; state may be changed while the app runs."""
    # One catch-all route: _Api routes on the raw path itself (see the module docstring).
    return Starlette(routes=[Route("/{path:path}", _Api(state).handle, methods=_ALL_METHODS)])
