"""The regression gate in a Prefect flow (flows/regression_gate.py): the flow run fails on a regression only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.test_check_cli import HISTORY, write_history

pytestmark = pytest.mark.prefect

AS_OF = datetime(2026, 11, 30, tzinfo=UTC)


def run_gate(out_dir: Path, **parameters: Any) -> Any:
    """A user's flow as docs/analytics.md shows it, minus the sync: it awaits the gate after its own work."""
    from prefect import flow

    from flows.regression_gate import check_regressions

    @flow(name="sync-and-check")
    async def sync_and_check() -> dict[str, object]:
        return await check_regressions(out_dir=str(out_dir), as_of=AS_OF, **parameters)

    return asyncio.run(sync_and_check(return_state=True))


def test_the_flow_run_fails_on_a_regression_and_completes_otherwise(prefect_harness: None, tmp_path: Path) -> None:
    from flows.regression_gate import RegressionFound

    write_history(tmp_path, HISTORY, test_scenarios=["Probe"])
    failed = run_gate(tmp_path)
    assert failed.is_failed()
    with pytest.raises(RegressionFound, match=r"1 scenario\(s\) regressed .*: Refund \(90.0% -> 40.0%\)") as raised:
        failed.result()
    assert [s.scenario_name for s in raised.value.result.regressions] == ["Refund"]

    held = run_gate(tmp_path, scenario="Cancel")
    assert held.is_completed()
    result = held.result()
    assert result["regressed"] is False and [s["status"] for s in result["scenarios"]] == ["held"]

    relaxed = run_gate(tmp_path, window="7d", baseline="4w", max_drop=50.0)  # Refund fell by exactly 50
    assert relaxed.is_completed()
