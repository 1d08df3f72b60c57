"""How the flow drives its tasks on Dask: a window at a time, one more run after a failure, a stop stops the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flows import scale
from flows.chunks import ChunkReport


class Future:
    """A stand-in for prefect-dask's future: a Dask future whose value is the task's reports, or its error."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped_future = wrapped

    def result(self, raise_on_failure: bool = True) -> list[ChunkReport]:
        value = self.wrapped_future.result()
        if isinstance(value, Exception):
            raise value
        return list(value)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as in_process:
        yield in_process


def submitter(client: Any, behaviour: Callable[[int, int], list[ChunkReport] | Exception],
              calls: list[tuple[int, int]]) -> scale.Submit:
    def submit(index: int, attempt: int) -> Any:
        calls.append((index, attempt))
        return Future(client.submit(behaviour, index, attempt, pure=False))

    return submit


def test_a_failed_task_runs_once_more_and_then_counts_as_failed(client: Any) -> None:
    def behaviour(index: int, attempt: int) -> list[ChunkReport] | Exception:
        if (index == 1 and attempt == 1) or index == 2:
            return RuntimeError(f"worker of task {index} died")
        return [ChunkReport(f"task-{index}")]

    calls: list[tuple[int, int]] = []
    outcome = scale.run_tasks(submitter(client, behaviour, calls), tasks=4, window=2)
    assert sorted(report.part for report in outcome.reports) == ["task-0", "task-1", "task-3"]
    assert outcome.failed == {2: "RuntimeError: worker of task 2 died"}
    assert sorted(calls) == [(0, 1), (1, 1), (1, 2), (2, 1), (2, 2), (3, 1)]
    assert outcome.unsent == [] and outcome.stop_reason is None


def test_a_stop_in_one_task_leaves_the_tasks_not_started_unsent(client: Any) -> None:
    def behaviour(index: int, attempt: int) -> list[ChunkReport] | Exception:
        stop = "the API refused the token" if index == 1 else None
        return [ChunkReport(f"task-{index}", stop_reason=stop)]

    calls: list[tuple[int, int]] = []
    outcome = scale.run_tasks(submitter(client, behaviour, calls), tasks=6, window=1)
    assert [report.part for report in outcome.reports] == ["task-0", "task-1"]
    assert outcome.stop_reason == "the API refused the token"
    assert outcome.unsent == [2, 3, 4, 5] and calls == [(0, 1), (1, 1)]
