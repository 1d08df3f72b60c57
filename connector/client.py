"""The async Piper API client: fetch scenario runs by session id, concurrently, with retries; list sessions."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from connector.backoff import BackoffGate, LocalGate
from connector.body import (
    ACCEPT_ENCODING,
    BadEncoding,
    BodyTooLarge,
    NotJson,
    Refetch,
    TokenRedactor,
    decode_json,
    excerpt,
)
from connector.errors import (
    TOKEN_ENV,
    PiperAuthError,
    PiperCircuitOpen,
    PiperConfigError,
    PiperListFailed,
    PiperStopLoad,
    PiperUnreachable,
)
from connector.retry import Action, CircuitBreaker, RetryPolicy, classify_status, parse_retry_after
from connector.transport import (
    AiohttpSender,
    ConnectFailed,
    ConnectTimedOut,
    HttpxSender,
    Sender,
    SendError,
)
from connector.urls import (
    by_session_url,
    normalise_base_url,
    scenario_url,
    scenarios_list_url,
    session_events_url,
    session_id_problem,
    sessions_list_url,
)

Outcome = Literal["ok", "not_found", "failed", "rejected"]
HttpClient = Literal["aiohttp", "httpx"]
OnResult = Callable[["FetchResult"], Awaitable[None] | None]
HTTP_CLIENTS: tuple[HttpClient, ...] = ("aiohttp", "httpx")
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
USER_AGENT = "piper-etl/0.1"
MAX_PAGE_LIMIT = 500
"""The largest `limit` the list endpoints accept (docs/piper-api.md)."""
UNREACHABLE_AFTER = 3
"""Connection failures in a row, with no response from the API ever, after which the load stops."""
DEFAULT_CIRCUIT_BREAKER = CircuitBreaker()
GATE_SLACK = 0.001
"""Seconds by which the back-off gate's deadline must pass a request's own wait to hold that request longer."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed to connect, between two reads, and for a whole request (headers and body)."""

    connect: float = 10.0
    read: float = 30.0
    request: float = 120.0


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What happened to one session: `ok` (payload parsed), `not_found`, `failed` or `rejected`.

    `rejected` is final, never worth fetching again: either the session id is unusable (no request was
    sent, `body` is None) or the API answered 2xx with a body that will never parse as JSON (`body`
    holds it raw and `error` says why; keep it as a rejected payload). Every text here (`payload`,
    `body`, `error`) has the API token replaced by `[REDACTED]`.
    """

    session_id: str
    outcome: Outcome
    payload: object = None
    body: bytes | None = None
    http_status: int | None = None
    attempts: int = 0
    error: str | None = None
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    elapsed_ms: float = 0.0
    events: FetchResult | None = None  # the session's events (`fetch_many(with_events=True)`), when its run was ok


@dataclass(frozen=True, slots=True)
class SessionsPage:
    """One page of the sessions list as the API sent it: raw items (validated by `schemas`), and `total`.

    `total` is None when the API sent no usable count.
    """

    offset: int
    limit: int
    items: list[object]
    total: int | None
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class ScenariosPage:
    """One page of the scenarios list as the API sent it: raw items (validated by `schemas`)."""

    offset: int
    limit: int
    items: list[object]
    attempts: int = 1


@dataclass(slots=True)
class FetchBatch:
    """Results of `fetch_many`: one per requested session, in request order (none when a callback took them).

    `stopped` is set when no further request could succeed (the token was refused, the API was
    unreachable, or the circuit breaker tripped): the batch stopped sending requests, and the sessions
    it never finished (those waiting to retry included) are `failed` with a reason saying so.
    """

    results: list[FetchResult]
    stopped: PiperStopLoad | None = None


class _Token:
    """Holds the API token so that it never shows up in a repr, a log line or a traceback's locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Token('****')"

    __str__ = __repr__


class PiperClient:
    """Async client for `GET /v1/orgs/{org_id}/scenarios/runs/by-session/{session_id}` and the sessions list.

    One connection pool sized to `concurrency` is shared by all requests. Use as an async context
    manager. Requests go through aiohttp by default (`http_client="httpx"` for httpx); `transport` injects an
    httpx transport (tests use `httpx.MockTransport`); `sleep`, `clock` and `rng` make backoff and the
    circuit breaker testable. `circuit_breaker=None` turns the breaker off. `gate`: the 429 back-off every
    request waits for (`connector/backoff.py`); by default one of this client's own, so that a 429 holds back
    all of its requests for the wait, not only the retry of the request that got it.

    The token is checked here, before any request (printable ASCII, no white space inside), and every
    body, header and error text from the server is cleared of it before it is parsed or quoted.
    """

    def __init__(
        self,
        *,
        base_url: str,
        org_id: str,
        token: str,
        concurrency: int = 16,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: HttpClient = "aiohttp",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        circuit_breaker: CircuitBreaker | None = DEFAULT_CIRCUIT_BREAKER,
        gate: BackoffGate | None = None,
    ) -> None:
        if not org_id:
            raise PiperConfigError("org id is empty; pass --org-id or set PIPER_ORG_ID")
        token = token.strip()
        if not token:
            raise PiperConfigError(f"no API token; set the {TOKEN_ENV} environment variable")
        problem = token_problem(token)
        if problem is not None:
            raise PiperConfigError(f"the API token in {TOKEN_ENV} {problem}; set it to the token exactly as issued")
        if concurrency < 1:
            raise PiperConfigError("concurrency must be at least 1")
        if http_client not in HTTP_CLIENTS:
            raise PiperConfigError(f"http client must be one of {', '.join(HTTP_CLIENTS)}, not {http_client!r}")
        self.http_client = http_client
        self.base_url = normalise_base_url(base_url)
        self.org_id = org_id
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self.max_body_bytes = max_body_bytes
        self.circuit_breaker = circuit_breaker
        self._token = _Token(token)
        self._redactor = TokenRedactor(token)
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._gate: BackoffGate = gate if gate is not None else LocalGate(clock)
        self._sender: Sender | None = None
        self._responses = 0  # HTTP responses received, of any status: proof that the API is reachable
        self._unusable_in_a_row = 0  # attempts without a usable answer since the last one (the breaker's count)
        self._unusable_since: float | None = None  # the last usable answer, or the first attempt
        self._stopped: PiperStopLoad | None = None  # set once: no request is sent after it
        self._stopped_event: asyncio.Event | None = None  # wakes the sessions waiting to retry

    def __repr__(self) -> str:
        return f"PiperClient(base_url={self.base_url!r}, org_id={self.org_id!r})"

    async def __aenter__(self) -> PiperClient:
        headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        connect, read, pool, cap = self.timeouts.connect, self.timeouts.read, self.concurrency, self.max_body_bytes
        if self._transport is not None or self.http_client == "httpx":
            self._sender = HttpxSender(
                headers, connect=connect, read=read, pool_size=pool, max_body=cap, transport=self._transport
            )
        else:
            self._sender = AiohttpSender(headers, connect=connect, read=read, pool_size=pool, max_body=cap)
        self._stopped_event = asyncio.Event()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None

    async def fetch_many(
        self, session_ids: Sequence[str], on_result: OnResult | None = None, *, with_events: bool = False
    ) -> FetchBatch:
        """Fetch every session with at most `concurrency` requests in flight; one result per id.

        `with_events`: a session whose run fetch ended `ok` also gets its events fetched
        (`fetch_session_events`) by the same worker, right after its run; the result carries them as `events`.

        Without `on_result`, the batch holds the results in request order. With it, every result is
        handed over as soon as it is known, including the `failed` results of sessions never sent after
        the load stopped; an awaitable it returns is awaited (a consumer's back-pressure), and the
        batch keeps no results, so memory does not grow with the number of sessions.
        """
        keep = on_result is None
        results: list[FetchResult | None] = [None] * len(session_ids) if keep else []
        finished = bytearray(len(session_ids))  # a byte a session: which ones ended, to name the rest after a stop
        queue = iter(enumerate(session_ids))
        stops: list[PiperStopLoad] = []

        async def deliver(index: int, result: FetchResult) -> None:
            finished[index] = 1
            if on_result is None:
                results[index] = result
                return
            pending = on_result(result)
            if pending is not None:
                await pending

        async def worker() -> None:
            for index, session_id in queue:
                if stops:
                    return
                try:
                    result = await self.fetch_run_by_session(session_id)
                    if with_events and result.outcome == "ok":
                        result = replace(result, events=await self.fetch_session_events(session_id))
                except PiperStopLoad as exc:
                    stops.append(exc)
                    return
                await deliver(index, result)

        workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(session_ids)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
        stopped = stops[0] if stops else None
        for index, session_id in enumerate(session_ids):
            if not finished[index]:
                await deliver(index, FetchResult(
                    session_id=session_id,
                    outcome="failed",
                    http_status=stopped.status if stopped else None,
                    error=stopped.unfetched_reason if stopped else "not fetched",
                ))
        return FetchBatch([r for r in results if r is not None], stopped)

    async def list_scenarios_page(self, *, limit: int, offset: int) -> ScenariosPage:
        """One page of `GET /v1/orgs/{org_id}/scenarios`: its raw items (the API sends a JSON list).

        Retried, backed off, redacted and counted by the circuit breaker exactly as a by-session fetch.
        Raises `PiperListFailed` when the page cannot be read (retries exhausted, 404, another 4xx, a
        body that is neither a list nor `{"scenarios": [...]}`), and `PiperStopLoad` as a fetch does.
        """
        what, result = await self._list_page("scenarios", scenarios_list_url, limit=limit, offset=offset)
        body = result.payload
        items = body.get("scenarios") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise PiperListFailed(what, 'the body is neither a list nor an object with a "scenarios" list')
        return ScenariosPage(offset=offset, limit=limit, items=items, attempts=result.attempts)

    async def fetch_scenario(self, scenario_id: str) -> FetchResult:
        """Fetch `GET /v1/orgs/{org_id}/scenarios/{scenario_id}`, retrying what is worth retrying.

        The result's `session_id` names the request (`scenario <id>`); its outcome, payload, status and
        error mean what they mean for a by-session fetch (`not_found` for a 404). Raises only
        `PiperStopLoad`, as `fetch_run_by_session` does.
        """
        subject = f"scenario {scenario_id}"
        problem = session_id_problem(scenario_id)  # the same rules make any id safe as one path segment
        if problem is not None:
            return FetchResult(session_id=subject, outcome="rejected",
                               error="scenario id " + problem.removeprefix("session id "))
        return await self._request(scenario_url(self.base_url, self.org_id, scenario_id), subject)

    async def fetch_run_by_session(self, session_id: str) -> FetchResult:
        """Fetch one session's scenario run, retrying what is worth retrying.

        Returns a result for every outcome except those that stop the whole load (`PiperStopLoad`): a
        refused token (`PiperAuthError`), connection failures on every attempt while no request of this
        client has ever had a response (`PiperUnreachable`), and the circuit breaker tripping
        (`PiperCircuitOpen`). After one of them this client sends nothing more: a session waiting to
        retry, and every later call, raises the same stop.

        A 2xx body that never parses however often it is fetched (nested too deep for any parser, or a
        syntax error in the very same bytes twice) is `rejected` with the body kept; a truncated body or
        an HTML page is retried like a 503.
        """
        problem = session_id_problem(session_id)
        if problem is not None:
            return FetchResult(session_id=session_id, outcome="rejected", error=problem)
        return await self._request(by_session_url(self.base_url, self.org_id, session_id), session_id)

    async def fetch_session_events(self, session_id: str) -> FetchResult:
        """Fetch `GET /v1/orgs/{org_id}/responses/sessions/{session_id}/events`: the agent's own runs in the session.

        Retried, backed off, redacted and counted by the circuit breaker exactly as `fetch_run_by_session`,
        with the same outcomes (`not_found` for a 404) and the same stops (`PiperStopLoad`).
        """
        problem = session_id_problem(session_id)
        if problem is not None:
            return FetchResult(session_id=session_id, outcome="rejected", error=problem)
        return await self._request(session_events_url(self.base_url, self.org_id, session_id), session_id)

    async def list_sessions_page(self, *, limit: int, offset: int) -> SessionsPage:
        """One page of `GET /v1/orgs/{org_id}/sessions/`: its raw items and the `total` the API reported.

        Retried, backed off, redacted and counted by the circuit breaker exactly as a by-session fetch.
        Raises `PiperListFailed` when the page cannot be read (retries exhausted, 404, another 4xx, a
        body that is not `{"sessions": [...]}`), and `PiperStopLoad` as a fetch does.
        """
        what, result = await self._list_page("sessions", sessions_list_url, limit=limit, offset=offset)
        body = result.payload
        items = body.get("sessions") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise PiperListFailed(what, 'the body is not an object with a "sessions" list')
        total = body.get("total") if isinstance(body, dict) else None
        known_total = total if type(total) is int and total >= 0 else None
        return SessionsPage(offset=offset, limit=limit, items=items, total=known_total, attempts=result.attempts)

    async def _list_page(
        self, kind: str, url_of: Callable[..., str], *, limit: int, offset: int
    ) -> tuple[str, FetchResult]:
        """Request one page of a list endpoint: (what it is called in errors, the answer with a JSON body).

        Raises `PiperListFailed` for any answer but a 2xx with a JSON body (a 404 names the org id).
        """
        if not 1 <= limit <= MAX_PAGE_LIMIT or offset < 0:
            raise ValueError(f"limit must be 1..{MAX_PAGE_LIMIT} and offset >= 0, not {limit} and {offset}")
        what = f"{kind} list page (offset {offset}, limit {limit})"
        result = await self._request(url_of(self.base_url, self.org_id, limit=limit, offset=offset), what)
        if result.outcome == "not_found":
            raise PiperListFailed(what, f"HTTP 404: check the org id {self.org_id!r} and the base URL")
        if result.outcome != "ok":
            raise PiperListFailed(what, result.error or result.outcome)
        return what, result

    async def _request(self, url: str, subject: str) -> FetchResult:
        """GET `url` until it gives an answer worth keeping; `subject` names what was asked for in the result.

        The one retry loop of the client (the by-session fetch and the list pages go through it).
        """
        if self._sender is None:
            raise RuntimeError("PiperClient must be used as 'async with PiperClient(...)'")
        started = self._clock()
        if self._unusable_since is None:
            self._unusable_since = started
        deadline = started + self.retry.budget_seconds
        attempt = 0
        connect_failures = 0
        unparsed_digest: bytes | None = None  # the last 2xx body with a syntax error, to see it come back
        resume_at = -math.inf  # when the last wait of this request ends, on the client's clock
        while True:
            if self._stopped is not None:
                raise self._stopped
            while (held := self._gate.remaining()) > 0 and (until := self._clock() + held) > resume_at + GATE_SLACK:
                resume_at = until  # a 429 of any request holds back every request; its own wait counts
                await self._pause(held)
            attempt += 1
            status: int | None = None
            retry_after: float | None = None
            throttled: float | None = None  # a 429's wait, already told to the gate
            try:
                async with asyncio.timeout(self.timeouts.request):  # no extra task, unlike wait_for
                    response = await self._sender.get(url)
            except TimeoutError:
                reason = f"no complete response within {self.timeouts.request:g} s"
            except BodyTooLarge as exc:
                return self._result(subject, "failed", started, attempt, status=exc.status, error=str(exc),
                                    answered=True)
            except BadEncoding as exc:
                reason, status = str(exc), exc.status
            except (ConnectFailed, ConnectTimedOut) as exc:
                reason = str(exc)
                connect_failures += 1
            except SendError as exc:
                reason = str(exc)
            else:
                self._responses += 1
                status, body = response.status, self._redactor.body(response.body)
                action = classify_status(status)
                if action is Action.OK:
                    parsed = decode_json(self._redactor.text(response.content_type), body)
                    if not isinstance(parsed, NotJson):
                        return self._result(
                            subject, "ok", started, attempt, status=status, payload=parsed, body=body, answered=True
                        )
                    reason = parsed.reason
                    if parsed.refetch is Refetch.ONCE:
                        digest = hashlib.blake2b(body, digest_size=16).digest()
                        if digest == unparsed_digest:
                            parsed = NotJson(f"{reason}; the same bytes came back when fetched again", Refetch.USELESS)
                        unparsed_digest = digest
                    if parsed.refetch is Refetch.USELESS:
                        return self._result(subject, "rejected", started, attempt, status=status, body=body,
                                            error=parsed.reason, answered=True)
                elif action is Action.NOT_FOUND:
                    return self._result(subject, "not_found", started, attempt, status=status, answered=True)
                elif action is Action.AUTH:
                    raise self._stop(PiperAuthError(status, subject))
                elif action is Action.FAIL:
                    return self._result(subject, "failed", started, attempt, status=status,
                                        error=_describe_failure(status, body), answered=True)
                else:
                    reason = f"HTTP {status}"
                    if status == 429:
                        retry_after = parse_retry_after(response.retry_after)
                        throttled = self.retry.delay(attempt, retry_after, self._rng)
                        self._gate.pause(throttled)  # before any give-up below: the API asked everyone to wait
            reason = self._redactor.text(reason)  # library messages may quote what the server sent
            never_reached = connect_failures == attempt and self._responses == 0
            if never_reached and attempt >= min(UNREACHABLE_AFTER, self.retry.max_retries + 1):
                raise self._stop(PiperUnreachable(self.base_url, reason))
            self._count_unusable(reason)
            if attempt > self.retry.max_retries:
                error = f"{reason}; gave up after {attempt} attempts"
                return self._result(subject, "failed", started, attempt, status=status, error=error)
            wait = throttled if throttled is not None else self.retry.delay(attempt, retry_after, self._rng)
            if self._clock() + wait > deadline:
                if never_reached:
                    raise self._stop(PiperUnreachable(self.base_url, reason))
                error = f"{reason}; gave up after {attempt} attempts ({self.retry.budget_seconds:g} s budget spent)"
                return self._result(subject, "failed", started, attempt, status=status, error=error)
            resume_at = self._clock() + wait
            await self._pause(wait)

    def _stop(self, stop: PiperStopLoad) -> PiperStopLoad:
        """Stop this client for good (the first stop wins) and wake the sessions waiting to retry."""
        if self._stopped is None:
            self._stopped = stop
            if self._stopped_event is not None:
                self._stopped_event.set()
        return self._stopped

    def _count_unusable(self, reason: str) -> None:
        """Count an attempt that got no usable answer; raise `PiperCircuitOpen` if the breaker trips."""
        self._unusable_in_a_row += 1
        breaker = self.circuit_breaker
        if breaker is None or self._unusable_since is None:
            return
        seconds = self._clock() - self._unusable_since
        if breaker.trips(self._unusable_in_a_row, seconds):
            raise self._stop(PiperCircuitOpen(self._unusable_in_a_row, seconds, reason))

    async def _pause(self, seconds: float) -> None:
        """Wait before a retry, cut short by a stop of the client (then raised)."""
        sleeper: asyncio.Future[None] = asyncio.ensure_future(self._sleep(seconds))
        waits: set[asyncio.Future[Any]] = {sleeper}
        if self._stopped_event is not None:
            waits.add(asyncio.ensure_future(self._stopped_event.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if self._stopped is not None:
            raise self._stopped
        sleeper.result()  # a failing sleep function fails the fetch, as it did when awaited directly

    def _result(
        self,
        session_id: str,
        outcome: Outcome,
        started: float,
        attempts: int,
        *,
        status: int | None = None,
        payload: object = None,
        body: bytes | None = None,
        error: str | None = None,
        answered: bool = False,
    ) -> FetchResult:
        """One session's result; `answered`: it came from a usable answer, so the breaker's count starts again."""
        if answered:
            self._unusable_in_a_row = 0
            self._unusable_since = self._clock()
        return FetchResult(
            session_id=session_id,
            outcome=outcome,
            payload=payload,
            body=body,
            http_status=status,
            attempts=attempts,
            error=error,
            elapsed_ms=round((self._clock() - started) * 1000, 3),
        )


def token_problem(token: str) -> str | None:
    """What makes a (stripped) API token unusable in an HTTP header, without quoting any of it."""
    for position, char in enumerate(token, start=1):
        if char.isspace():
            return f"has white space inside (character {position})"
        if unicodedata.category(char) == "Cc":
            return f"has a control character (character {position})"
        if not char.isascii():
            return f"has a non-ASCII character (character {position})"
    return None


def _describe_failure(status: int, body: bytes) -> str:
    if 300 <= status < 400:
        return f"HTTP {status}: unexpected redirect, not followed"
    return f"HTTP {status}: {excerpt(body, 200)}"
