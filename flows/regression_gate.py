"""The regression gate in a Prefect flow: the task `check_regressions` fails, and with it the flow, on a regression.

What `piper-etl check` does, for a flow that syncs and then judges what it synced (docs/analytics.md):

    from prefect import flow
    from flows.prefect_flow import sync_sessions
    from flows.regression_gate import check_regressions

    @flow
    async def sync_and_check(out_dir: str = "/srv/piper") -> None:
        await sync_sessions(out_dir=out_dir)
        await check_regressions(out_dir=out_dir)  # raises RegressionFound: this flow run ends Failed
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.settings import configured_out_dir, out_root
from warehouse.objstore import Root
from warehouse.reader import open_analytics
from warehouse.regressions import CheckResult, check, parse_duration


class RegressionFound(Exception):
    """A scenario's pass rate fell by more than max_drop points; `result` is the whole comparison."""

    def __init__(self, result: CheckResult) -> None:
        names = ", ".join(f"{s.scenario_name} ({_rates(s.baseline_pass_rate, s.window_pass_rate)})"
                          for s in result.regressions)
        super().__init__(
            f"{len(result.regressions)} scenario(s) regressed in the {result.window_start.isoformat()} .. "
            f"{result.as_of.isoformat()} window, more than {result.max_drop:g} points below the baseline: {names}"
        )
        self.result = result


@task(name="check-regressions", cache_policy=NO_CACHE, persist_result=False)
async def check_regressions(
    out_dir: str | None = None,
    window: str = "7d",
    baseline: str = "28d",
    max_drop: float = 10.0,
    min_runs: int = 5,
    scenario: str | None = None,
    include_test: bool = False,
    as_of: datetime | None = None,
) -> dict[str, object]:
    """Run the gate over `out_dir` (default PIPER_OUT_DIR, as `sync_sessions`); raise RegressionFound on a regression.

    Parameters mean what the flags of `piper-etl check` mean; `as_of` defaults to now. Returns what
    `check --json` prints when nothing regressed.
    """
    folder = out_root(out_dir) if out_dir else configured_out_dir()
    result = await asyncio.to_thread(
        _check, folder, as_of=as_of or datetime.now(UTC), window=window, baseline=baseline, max_drop=max_drop,
        min_runs=min_runs, scenario=scenario, include_test=include_test,
    )
    logger = get_run_logger()
    counts = {status: sum(s.status == status for s in result.scenarios) for status in ("regressed", "held",
                                                                                      "not judged")}
    logger.info("Regression check as of %s over %s: %d regressed, %d held, %d not judged; %d new failing criteria",
                result.as_of.isoformat(), folder, counts["regressed"], counts["held"], counts["not judged"],
                len(result.new_failures))
    if result.regressed:
        raise RegressionFound(result)
    return result.to_json()


def _check(folder: Root, *, as_of: datetime, window: str, baseline: str, max_drop: float, min_runs: int,
           scenario: str | None, include_test: bool) -> CheckResult:
    opened = open_analytics(folder)
    try:
        return check(opened.con, as_of=as_of, window=parse_duration(window), baseline=parse_duration(baseline),
                     max_drop=max_drop, min_runs=min_runs, scenario=scenario, include_test=include_test)
    finally:
        opened.close()


def _rates(baseline: float | None, window: float | None) -> str:
    return f"{(baseline or 0) * 100:.1f}% -> {(window or 0) * 100:.1f}%"
