"""The two Dask settings: one of them at most, sensible values, and the Prefect engine they need."""

from __future__ import annotations

import pytest

from flows.scale import budget_name, share, task_slices
from flows.settings import LoadSettings, SettingError
from tests.conftest import Cli


def test_both_dask_settings_are_a_usage_error_naming_both_flags(cli: Cli) -> None:
    result = cli("load", "--org-id", "org", "--dask-address", "tcp://127.0.0.1:8786", "--dask-workers", "2", "s-1")
    assert result.code == 2
    assert result.stderr.startswith("piper-etl load: error: --dask-address and --dask-workers exclude each other: ")
    result = cli("sync", "--org-id", "org", "--dask-address", "tcp://127.0.0.1:8786", "--dask-workers", "2")
    assert result.code == 2 and "--dask-address and --dask-workers exclude each other" in result.stderr


def test_a_flow_run_names_the_parameters() -> None:
    with pytest.raises(SettingError, match=r"^dask_address and dask_workers exclude each other: "):
        LoadSettings(org_id="o", dask_address="tcp://h:8786", dask_workers=2)


@pytest.mark.parametrize(("given", "problem"), [
    ({"dask_workers": 0}, "dask_workers must be between 1 and 1024, not 0"),
    ({"dask_address": "http://h:8786"}, "dask_address must be a Dask scheduler address such as tcp://HOST:8786"),
    ({"dask_address": "  "}, "dask_address must be a Dask scheduler address"),
    ({"dask_address": "tcp://"}, "dask_address must be a Dask scheduler address"),
])
def test_unusable_dask_values_are_refused(given: dict[str, object], problem: str) -> None:
    with pytest.raises(SettingError, match=problem):
        LoadSettings(org_id="o", **given)  # type: ignore[arg-type]


def test_a_dask_address_is_kept_as_given_but_for_surrounding_blanks() -> None:
    assert LoadSettings(org_id="o", dask_address=" tcp://10.0.0.5:8786 ").dask_address == "tcp://10.0.0.5:8786"
    assert LoadSettings(org_id="o", dask_address="10.0.0.5:8786").on_dask


def test_the_local_engine_with_a_dask_flag_is_a_usage_error(cli: Cli) -> None:
    result = cli("load", "--org-id", "org", "--engine", "local", "--dask-workers", "2", "s-1")
    assert result.code == 2
    assert result.stderr.startswith("piper-etl load: error: --dask-workers runs the fetch tasks on Dask through the "
                                    "Prefect flow: drop --engine local, or drop --dask-workers")


def test_tasks_are_coarse_but_every_worker_thread_gets_a_share() -> None:
    ids = [f"s{i}" for i in range(10)]
    assert [len(s) for s in task_slices(ids, sessions_per_task=4, parallel=2)] == [4, 4, 2]
    assert [len(s) for s in task_slices(ids, sessions_per_task=5000, parallel=4)] == [3, 3, 3, 1]
    assert [s for chunk in task_slices(ids, 3, 8) for s in chunk] == ids and task_slices([], 3, 2) == []


def test_the_budget_is_shared_and_never_below_one_request_per_task() -> None:
    assert share(64, 4) == 16 and share(3, 2) == 1 and share(1, 8) == 1 and share(16, 0) == 16
    assert budget_name("3c90c3cc-0d44-4b50-8888-8dd25736052a") == "piper-api-3c90c3cc-0d44-4b50-8888-8dd25736052a"
    assert budget_name("a/b c") == "piper-api-a_b_c"
