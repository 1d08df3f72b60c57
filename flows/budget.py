"""The leases of a Dask load's fetch tasks on the org's API budget: held by the flow, so a dead worker leaks none.

A Prefect server gives back the slots of a lease nobody renews only where its *repossessor* service runs
(`prefect server start`, Prefect Cloud). Prefect's temporary server (no `PREFECT_API_URL`) and the test
harness run none: there a lease whose holder died keeps its slots in the limit for good, and the org's
next loads wait for them forever. So the holder of a task's slots is the flow, not the task:

- `TaskLeases` (the flow's process): before it submits a task, the flow takes the task's share of the
  limit with a lease; it renews every lease it holds every `RENEW_SECONDS`, and gives a task's lease back
  by its id as soon as the task's future ends, however it ended (done, failed, its worker killed), and all
  of them when the flow's run of the tasks ends. Giving back by id is idempotent and safe on any server:
  a lease the repossessor already took back is a no-op.
- `keeping(lease_id)` (the task, on a worker): the task renews the same lease while it runs, so that the
  tasks of a killed flow keep their budget until they end, and stops with `LeaseLost` when the lease is
  gone (given back by a flow that saw the task's worker die: a worker cut off from the scheduler but still
  running stops sending within `RENEW_SECONDS`).

What is still lost is a killed *flow*'s leases: a repossessor returns them `LEASE_SECONDS` after the last
renewal; a temporary server never does (docs/scale-out.md, "The API budget").
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

LEASE_SECONDS = 60.0
"""How long a lease nobody renews holds its slots where a repossessor runs (the least lease Prefect grants)."""
RENEW_SECONDS = LEASE_SECONDS / 3
"""How often the flow and a running task renew a task's lease: two renewals may fail before it lapses."""
WAIT_LOG_SECONDS = 60.0
"""How often a load that waits for slots of its limit says so."""
FIRST_WAIT_LOG_SECONDS = 5.0
"""How long the flow waits for slots that its own tasks do not hold before it first says so."""
RETRY_SECONDS = (0.5, 5.0)
"""The least and most seconds between two requests for slots the server refused (its Retry-After, bounded)."""

logger = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """A running task's lease on the API budget is gone (given back, or lapsed): it must not send any more."""


def waiting_line(name: str, slots: int, active: int | None, limit: int | None, waited: float) -> str:
    """What a load that waits for `slots` slots of the limit `name` logs: who may hold them, and the way out."""
    taken = f"{active} of its {limit} slots are taken" if active is not None else "its slots are taken"
    return (f"waiting {waited:.0f} s for {slots} slots of the global concurrency limit {name}: {taken}, by other "
            f"loads of the org or leaked by a killed one on a Prefect server without a repossessor (the temporary "
            f"server). `prefect gcl inspect {name}` shows it; when no load of the org is running, "
            f"`prefect gcl update {name} --active-slots 0` frees it")


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a Prefect client's error, if it is one."""
    import httpx

    return exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None


class TaskLeases:
    """The flow's leases on the limit `name`, one per submitted task, each of `slots` slots (see the module).

    `take(index)` asks for a lease without waiting and says whether it got one; `lease_of(index)` is its
    id; `give_back(index)` releases it. Used as a context manager: leases are renewed in a thread while it
    is open, and every lease still held is given back when it closes. `client` makes the sync Prefect
    clients (one per thread); `log` receives the waiting lines.
    """

    def __init__(self, name: str, slots: int, limit: int, *, log: logging.Logger | logging.LoggerAdapter[Any],
                 client: Callable[[], SyncPrefectClient] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.slots = slots
        self.limit = limit
        self.log = log
        self._client_factory = client or default_client
        self._clock = clock
        self._held: dict[int, UUID] = {}
        self._unreleased: list[UUID] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._client: SyncPrefectClient | None = None
        self._next_try = 0.0
        self._waiting_since: float | None = None
        self._logged_at: float | None = None

    def __enter__(self) -> TaskLeases:
        self._client = self._client_factory()
        self._client.__enter__()
        context = contextvars.copy_context()  # the thread reaches the same Prefect server as the flow
        self._renewer = threading.Thread(target=context.run, args=(self._renew_loop,), name=f"leases-{self.name}",
                                         daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)
        for index in list(self._held):
            self.give_back(index)
        for lease_id in self._unreleased:  # a last try; what still fails lapses only where a repossessor runs
            self._release(lease_id)
        if self._client is not None:
            self._client.__exit__(None, None, None)

    def lease_of(self, index: int) -> str:
        return str(self._held[index])

    def take(self, index: int) -> bool:
        """Take task `index`'s share of the limit, if the limit has room now (else False: try again later).

        No request is sent while the flow's own leases leave no room, nor before the server's Retry-After.
        """
        if index in self._held:
            return True
        with self._lock:
            held = len(self._held) * self.slots
        now = self._clock()
        if held + self.slots > self.limit or now < self._next_try:
            return False
        import httpx
        from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse

        assert self._client is not None, "take() needs the leases open (a `with` block)"
        try:
            response = self._client.increment_concurrency_slots_with_lease(
                [self.name], self.slots, "concurrency", LEASE_SECONDS)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 423:  # 423 Locked: no room now; anything else is an error of the load
                raise
            retry_after = float(exc.response.headers.get("Retry-After", RETRY_SECONDS[0]))
            self._next_try = now + min(max(retry_after, RETRY_SECONDS[0]), RETRY_SECONDS[1])
            self._say_waiting(now)
            return False
        granted = ConcurrencyLimitWithLeaseResponse.model_validate(response.json())
        if not granted.limits:
            raise RuntimeError(f"the global concurrency limit {self.name} does not exist")
        with self._lock:
            self._held[index] = granted.lease_id
        self._waiting_since = self._logged_at = None
        return True

    def give_back(self, index: int) -> None:
        """Release task `index`'s lease by its id (a no-op for a lease the server no longer has).

        A release that fails (the Prefect server unreachable) is logged and tried again when the leases
        close; the server still counts those slots meanwhile, so the budget holds.
        """
        with self._lock:
            lease_id = self._held.pop(index, None)
        if lease_id is None:
            return
        if not self._release(lease_id):
            self._unreleased.append(lease_id)
        self._next_try = 0.0  # room again: the next take asks at once

    def _release(self, lease_id: UUID) -> bool:
        assert self._client is not None
        try:
            self._client.release_concurrency_slots_with_lease(lease_id)
        except Exception as exc:
            self.log.warning("could not give back the lease %s on %s: %s", lease_id, self.name, type(exc).__name__)
            return False
        return True

    def _say_waiting(self, now: float) -> None:
        """Log the wait (for slots the load's own tasks do not hold) after a few seconds, then every minute."""
        if self._waiting_since is None:
            self._waiting_since = now
        if now - self._waiting_since < FIRST_WAIT_LOG_SECONDS or (
                self._logged_at is not None and now - self._logged_at < WAIT_LOG_SECONDS):
            return
        self._logged_at = now
        active = limit = None
        with contextlib.suppress(Exception):
            assert self._client is not None
            read = self._client.read_global_concurrency_limit_by_name(self.name)
            active, limit = read.active_slots, read.limit
        self.log.warning(waiting_line(self.name, self.slots, active, limit, now - self._waiting_since))

    def _renew_loop(self) -> None:
        with self._client_factory() as client:
            while not self._stop.wait(RENEW_SECONDS):
                with self._lock:
                    held = dict(self._held)
                for index, lease_id in held.items():
                    try:
                        client.renew_concurrency_lease(lease_id, LEASE_SECONDS)
                    except Exception as exc:  # the task renews it too, and stops when it is gone
                        self.log.warning("could not renew the lease of fetch task %d on %s: %s", index + 1,
                                         self.name, type(exc).__name__)


def default_client() -> SyncPrefectClient:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


@contextlib.asynccontextmanager
async def keeping(lease_id: str, renew_seconds: float = RENEW_SECONDS) -> AsyncIterator[None]:
    """Renew the flow's lease `lease_id` while the block runs; when it is gone, cancel the block: `LeaseLost`.

    A renewal that fails for another reason (the server unreachable) is tried again every `renew_seconds`
    until the lease may have lapsed (`LEASE_SECONDS` after the last renewal), then the block stops too:
    the task is run again rather than fetch outside the budget.
    """
    from prefect.client.orchestration import get_client

    body = asyncio.current_task()
    assert body is not None
    lost: list[BaseException] = []

    async def renew() -> None:
        renewed = time.monotonic()
        async with get_client() as client:
            while True:
                try:
                    await client.renew_concurrency_lease(UUID(lease_id), LEASE_SECONDS)
                    renewed = time.monotonic()
                except Exception as exc:
                    if status_of(exc) == 410 or time.monotonic() - renewed > LEASE_SECONDS - renew_seconds:
                        lost.append(exc)
                        body.cancel()
                        return
                    logger.warning("could not renew the task's lease %s: %s", lease_id, type(exc).__name__)
                await asyncio.sleep(renew_seconds)

    renewer = asyncio.create_task(renew())
    try:
        await asyncio.sleep(0)
        yield
    except asyncio.CancelledError:
        if lost:
            body.uncancel()
            raise LeaseLost(f"the lease {lease_id} on the API budget is gone ({type(lost[0]).__name__}): "
                            "this run of the task stops") from lost[0]
        raise
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
