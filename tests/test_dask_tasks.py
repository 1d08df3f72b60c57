"""How the flow drives its tasks on Dask: a window at a time, one more run after a failure, a stop stops the rest."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flows import scale
from flows.chunks import ChunkReport


class Future:
    """A stand-in for prefect-dask's future: the wrapped future's value is the task's reports, or its error."""

    def __init__(self, wrapped: concurrent.futures.Future[list[ChunkReport] | Exception]) -> None:
        self.wrapped_future = wrapped

    def result(self, raise_on_failure: bool = True) -> list[ChunkReport]:
        value = self.wrapped_future.result()
        if isinstance(value, Exception):
            raise value
        return list(value)


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as threads:
        yield threads


def submitter(pool: concurrent.futures.ThreadPoolExecutor,
              behaviour: Callable[[int, int], list[ChunkReport] | Exception],
              calls: list[tuple[int, int]]) -> scale.Submit:
    def submit(index: int, attempt: int) -> Any:
        calls.append((index, attempt))
        return Future(pool.submit(behaviour, index, attempt))

    return submit


def test_a_failed_task_runs_once_more_and_then_counts_as_failed(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    def behaviour(index: int, attempt: int) -> list[ChunkReport] | Exception:
        if (index == 1 and attempt == 1) or index == 2:
            return RuntimeError(f"worker of task {index} died")
        return [ChunkReport(f"task-{index}")]

    calls: list[tuple[int, int]] = []
    outcome = scale.run_tasks(submitter(pool, behaviour, calls), tasks=4, window=2)
    assert sorted(report.part for report in outcome.reports) == ["task-0", "task-1", "task-3"]
    assert outcome.failed == {2: "RuntimeError: worker of task 2 died"}
    assert sorted(calls) == [(0, 1), (1, 1), (1, 2), (2, 1), (2, 2), (3, 1)]
    assert outcome.unsent == [] and outcome.stop_reason is None


def test_a_stop_in_one_task_leaves_the_tasks_not_started_unsent(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    def behaviour(index: int, attempt: int) -> list[ChunkReport] | Exception:
        stop = "the API refused the token" if index == 1 else None
        return [ChunkReport(f"task-{index}", stop_reason=stop)]

    calls: list[tuple[int, int]] = []
    outcome = scale.run_tasks(submitter(pool, behaviour, calls), tasks=6, window=1)
    assert [report.part for report in outcome.reports] == ["task-0", "task-1"]
    assert outcome.stop_reason == "the API refused the token"
    assert outcome.unsent == [2, 3, 4, 5] and calls == [(0, 1), (1, 1)]
