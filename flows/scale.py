"""The load's fetch tasks on a Dask cluster (`prefect-dask`), under one API budget for the whole cluster.

With `dask_address` or `dask_workers` set, the flow submits its `fetch-and-land` tasks to a
`DaskTaskRunner` instead of running them one after another. Each task still fetches, flattens and lands
its own chunks and returns only its chunk reports; the flow's load transaction inserts the chunks into
DuckDB as they land and commits once, at the end (`warehouse/load.py`). The workers must see the load's
output folder at the same path (one machine, or a shared file system).

The API budget: `concurrency` is the requests in flight for the whole cluster. The flow sets a Prefect
global concurrency limit of that size, named after the org (`budget_name`); before it submits a task it
takes `ApiBudget.slots` of it with a lease of its own, and the task's client keeps at most that many
requests in flight while the task runs, so the sum over the cluster never passes the limit, whatever the
number of workers, and loads of the same org started elsewhere share it. The flow gives the lease back
when the task's future ends in any way, so a task whose worker dies leaks no slot, on any Prefect server
(`flows/budget.py`). A 429 in any task pauses the requests of every task of the org for its wait
(`flows/backoff.py`). The flow's scenario refresh takes a task's share of the same limit, waiting at most
`REFRESH_WAIT_SECONDS` for it (docs/scale-out.md).

Tasks are coarse (the known prefect-dask issues PrefectHQ/prefect#21697, scheduler memory per task run,
and #12877, stalls after a few hundred tasks): one task per `sessions_per_task` sessions or per worker
share of the load, whichever is smaller; at most `WINDOW_PER_SLOT` tasks per worker thread are
submitted at a time, and each finished task's Dask future is released at once (so that a worker dying
later does not make Dask run it again, #15442). A task whose worker died is run again, by Dask itself
or, once its future has failed, once more by the flow; each run keeps the chunks earlier runs completed
(`warehouse/streams.py`). Sessions of a task whose future failed twice are recorded `failed`, so every
session has an outcome and a rerun fetches them.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from flows.budget import LEASE_SECONDS as LEASE_SECONDS  # the tests and the refresh's wait read it here
from flows.budget import WAIT_LOG_SECONDS, waiting_line
from flows.chunks import ChunkReport, ChunkSink, log_row, log_table
from flows.settings import LoadSettings
from warehouse.streams import FAILURES_KEPT, LandedStream

if TYPE_CHECKING:
    from prefect_dask.task_runners import DaskTaskRunner, PrefectDaskFuture

ATTEMPTS = 2
"""Runs of one task at most (the second after its worker died or its run crashed)."""
WINDOW_PER_SLOT = 2
"""Tasks submitted per worker thread at a time: one running, one queued behind it."""
POLL_SECONDS = 0.05
"""How often the flow looks for finished tasks."""
REFRESH_WAIT_SECONDS = LEASE_SECONDS + 30.0
"""How long the flow's scenario refresh waits for its slots: past the lease of a dead flow's, then it is skipped."""


@dataclass(frozen=True)
class ApiBudget:
    """A task's share of the org's API budget: `slots` requests in flight, held in the global limit `name`.

    `lease_id`: the lease the flow took for the task (`flows/budget.py`), which the task renews while it
    runs; None: the task takes its slots itself (`occupying`), as a caller that is not the flow would.
    """

    name: str
    slots: int
    lease_id: str | None = None


def budget_name(org_id: str) -> str:
    """The Prefect global concurrency limit of an org's API budget."""
    return "piper-api-" + re.sub(r"[^A-Za-z0-9_.-]", "_", org_id)


def task_runner(settings: LoadSettings) -> DaskTaskRunner:
    """The Dask task runner the settings name: a running scheduler, or a local cluster of worker processes."""
    from prefect_dask.task_runners import DaskTaskRunner

    if settings.dask_address is not None:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": settings.dask_workers, "processes": True, "threads_per_worker": 1, "dashboard_address": ":0",
    })


async def set_budget(name: str, limit: int) -> None:
    """Create the global concurrency limit `name` of `limit` slots, or set an existing one to `limit`."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists

    async with get_client() as client:
        try:
            await client.upsert_global_concurrency_limit_by_name(name, limit)
        except ObjectAlreadyExists:  # another load of the org created it meanwhile
            await client.upsert_global_concurrency_limit_by_name(name, limit)


@asynccontextmanager
async def occupying(budget: ApiBudget, wait_seconds: float | None = None) -> AsyncIterator[None]:
    """Hold `budget.slots` slots of the global limit for the block's duration (waiting until they are free).

    `wait_seconds`: wait at most that long for them, then raise `TimeoutError`; None waits as long as it takes.
    A wait is logged once it has lasted `WAIT_LOG_SECONDS`, then every `WAIT_LOG_SECONDS` (`waiting_line`).
    """
    from contextlib import AsyncExitStack

    from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError, concurrency

    started = time.monotonic()
    async with AsyncExitStack() as stack:
        while True:
            left = None if wait_seconds is None else wait_seconds - (time.monotonic() - started)
            try:
                await stack.enter_async_context(concurrency(
                    budget.name, occupy=budget.slots, strict=True, lease_duration=LEASE_SECONDS,
                    timeout_seconds=WAIT_LOG_SECONDS if left is None else min(left, WAIT_LOG_SECONDS)))
                break
            except AcquireConcurrencySlotTimeoutError:
                if left is not None and left <= WAIT_LOG_SECONDS:
                    raise
                await log_waiting(budget, time.monotonic() - started)
        yield


async def log_waiting(budget: ApiBudget, waited: float) -> None:
    """Say which limit a task has waited `waited` seconds for, how much of it is taken, and the way out."""
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client

    active = limit = None
    try:
        async with get_client() as client:
            read = await client.read_global_concurrency_limit_by_name(budget.name)
        active, limit = read.active_slots, read.limit
    except Exception:  # the line matters more than the figures
        pass
    get_run_logger().warning(waiting_line(budget.name, budget.slots, active, limit, waited))


def share(concurrency: int, parallel: int) -> int:
    """Requests in flight per task when `parallel` tasks run at once within a budget of `concurrency`."""
    return max(1, concurrency // max(1, parallel))


def task_slices(to_fetch: Sequence[str], sessions_per_task: int, parallel: int) -> list[list[str]]:
    """The sessions of each task: `sessions_per_task` at most, and no fewer tasks than `parallel` worker threads."""
    if not to_fetch:
        return []
    size = max(1, min(sessions_per_task, math.ceil(len(to_fetch) / max(1, parallel))))
    return [list(to_fetch[i : i + size]) for i in range(0, len(to_fetch), size)]


def stream_name(index: int) -> str:
    return f"task-{index + 1:04d}"


def reports_of(landed: LandedStream) -> list[ChunkReport]:
    """The chunk reports of the complete chunks an earlier attempt of a task landed."""
    return [ChunkReport(chunk.part, outcomes=chunk.outcomes, rows=chunk.rows, failures=list(chunk.failures),
                        scenario_ids=set(chunk.scenario_ids)) for chunk in landed.chunks]


@dataclass
class Outcome:
    """How the tasks went: every finished task's reports, the tasks that failed twice, those never started."""

    reports: list[ChunkReport]
    failed: dict[int, str]  # task index -> why its last attempt failed
    unsent: list[int]  # task indexes not submitted because a task stopped the load
    stop_reason: str | None


Submit = Callable[[int, int], "PrefectDaskFuture[list[ChunkReport]]"]
"""Submits attempt (1-based) of task `index`, returning its future."""


class Leases(Protocol):
    """The flow's hold on the API budget per task (`flows.budget.TaskLeases`): taken before, given back after."""

    def take(self, index: int) -> bool: ...

    def give_back(self, index: int) -> None: ...


class Unlimited:
    """No budget: every task may start (a test's run of the tasks alone)."""

    def take(self, index: int) -> bool:
        return True

    def give_back(self, index: int) -> None:
        pass


def run_tasks(submit: Submit, tasks: int, window: int, leases: Leases | None = None) -> Outcome:
    """Run `tasks` tasks through `submit`, `window` at a time, each at most `ATTEMPTS` times (blocks).

    `leases`: a task is submitted only once it holds its share of the budget (`leases.take`), and its
    share is given back as soon as its future ends, however it ended; a run again takes it afresh.
    A task whose reports say the load must stop (a refused token, the circuit breaker) stops the
    submission of the tasks not yet started; those already running finish (and will stop, too), and a
    task run again after a failure still runs.
    """
    budget = leases or Unlimited()
    outcome = Outcome([], {}, [], None)
    waiting = list(range(tasks))
    again: list[tuple[int, int]] = []  # (index, attempt) of the tasks to run again
    running: dict[Any, tuple[int, int, PrefectDaskFuture[list[ChunkReport]]]] = {}

    def start(index: int, attempt: int) -> None:
        future = submit(index, attempt)
        running[future.wrapped_future] = (index, attempt, future)

    while waiting or running or again:
        while again and len(running) < window and budget.take(again[0][0]):
            start(*again.pop(0))
        while not again and waiting and len(running) < window and outcome.stop_reason is None \
                and budget.take(waiting[0]):
            start(waiting.pop(0), 1)
        if outcome.stop_reason is not None:
            outcome.unsent.extend(waiting)
            waiting.clear()
        if not running:
            if not (waiting or again):
                break
            time.sleep(POLL_SECONDS)  # the budget is taken by others: `take` asks again when the server allows
            continue
        for wrapped in first_done(list(running), timeout=None if len(running) >= window else POLL_SECONDS):
            index, attempt, future = running.pop(wrapped)
            try:
                reports = future.result(raise_on_failure=True)
            except Exception as exc:  # the task failed, or its worker died (distributed.KilledWorker)
                if attempt < ATTEMPTS:
                    again.append((index, attempt + 1))
                else:
                    outcome.failed[index] = f"{type(exc).__name__}: {exc}"
                continue
            finally:
                release = getattr(wrapped, "release", None)  # a Dask future; a test's stand-in may have none
                if release is not None:
                    release()
                budget.give_back(index)
            outcome.reports.extend(reports)
            stop = next((r.stop_reason for r in reports if r.stop_reason is not None), None)
            outcome.stop_reason = outcome.stop_reason or stop
    return outcome


def first_done(futures: Sequence[Any], timeout: float | None = None) -> list[Any]:
    """The futures that are done, once at least one is or `timeout` seconds have passed (a poll: a few hundred
    tasks at most, each of seconds)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done = [future for future in futures if future.done()]
        if done or (deadline is not None and time.monotonic() >= deadline):
            return done
        time.sleep(POLL_SECONDS)


def cluster_threads(runner: DaskTaskRunner) -> int:
    """The worker threads of the runner's cluster: how many tasks can run at once (waits for a first worker)."""
    client = runner.client
    client.wait_for_workers(1, timeout=120)
    threads: dict[str, int] = client.nthreads()  # type: ignore[no-untyped-call]
    return max(1, sum(threads.values()))


def land_lost(sink: ChunkSink, load_id: str, session_ids: Sequence[str], part: str, reason: str) -> ChunkReport:
    """Record the sessions a failed task never landed as `failed`, so that none goes missing."""
    now = datetime.now(UTC)
    rows = [log_row(load_id, session_id, "failed", fetched_at=now, error=reason) for session_id in session_ids]
    if rows:
        sink(part, {"fetch_log": log_table(rows)})
    return ChunkReport(part, outcomes=Counter({"failed": len(rows)}),
                       failures=[(session_id, reason) for session_id in session_ids[:FAILURES_KEPT]])
