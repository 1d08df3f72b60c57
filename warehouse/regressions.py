"""The regression gate (`piper-etl check`): each scenario's run pass rate in a window against the baseline before it.

Pure SQL over an open DuckDB connection that has the analytics views (`warehouse/analytics.sql`): the run pass
rates come from `run_costs` (final runs: passed, failed, error; a run passes when its status is passed), the new
failures from `criteria_results` of those runs. Every value a caller gives is a bound parameter.

Windows go by the run's `started_at`, each open at its start and closed at its end:

    baseline = (as_of - window - baseline, as_of - window]      window = (as_of - window, as_of]

A run that has not started (no `started_at`) or names no scenario (no `scenario_id`) is in no window. A scenario
regressed when both windows hold at least `min_runs` final runs and its pass rate fell by more than `max_drop`
percentage points; exactly `max_drop` holds. The comparison is exact (whole-number arithmetic over the run counts),
so a drop from 9/10 to 8/10 is 10 points (in floats, 10.000000000000009). A new failure is a criterion of a scenario
that failed in a final run of the window and in none of the baseline's final runs (criteria without a
`criteria_id` cannot be followed across runs and are left out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from math import isfinite
from typing import Literal

import duckdb

Status = Literal["regressed", "held", "not judged"]
STATUS_ORDER: dict[str, int] = {"regressed": 0, "held": 1, "not judged": 2}


class UnknownScenarioError(LookupError):
    """`scenario` names no scenario (by name or id) of any run; `known` lists the names there are."""

    def __init__(self, scenario: str, known: tuple[str, ...]) -> None:
        listed = ", ".join(repr(name) for name in known) if known else "none: the store holds no runs"
        super().__init__(f"no scenario named {scenario!r} (by name or id); known scenarios: {listed}")
        self.scenario = scenario
        self.known = known


@dataclass(frozen=True)
class ScenarioComparison:
    """One scenario's final runs in the baseline and in the window, and the verdict on them."""

    scenario_id: str
    scenario_name: str  # the name of its newest run among those compared (its id when none has a name)
    baseline_runs: int
    baseline_pass_rate: float | None
    window_runs: int
    window_pass_rate: float | None
    drop_points: float | None  # (baseline_pass_rate - window_pass_rate) * 100; None when either is None
    status: Status  # not judged: fewer than min_runs final runs in either window
    baseline_passed: int = 0
    window_passed: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "scenario_id": self.scenario_id, "scenario_name": self.scenario_name,
            "baseline_runs": self.baseline_runs, "baseline_passed": self.baseline_passed,
            "baseline_pass_rate": self.baseline_pass_rate,
            "window_runs": self.window_runs, "window_passed": self.window_passed,
            "window_pass_rate": self.window_pass_rate,
            "drop_points": self.drop_points, "status": self.status,
        }


@dataclass(frozen=True)
class NewFailure:
    """A criterion that failed in final runs of the window and in no final run of the baseline."""

    scenario_id: str
    scenario_name: str
    criteria_id: str
    criteria_question: str | None  # the question of its newest failing evaluation
    window_fails: int
    last_failed_at: datetime
    window_evaluations: int = 0  # its PASS and FAIL verdicts in the window's final runs
    baseline_evaluations: int = 0  # in the baseline's: 0 means the criterion is new, not newly failing

    def to_json(self) -> dict[str, object]:
        return {
            "scenario_id": self.scenario_id, "scenario_name": self.scenario_name,
            "criteria_id": self.criteria_id, "criteria_question": self.criteria_question,
            "window_fails": self.window_fails, "window_evaluations": self.window_evaluations,
            "baseline_evaluations": self.baseline_evaluations,
            "last_failed_at": self.last_failed_at.isoformat(),
        }


@dataclass(frozen=True)
class CheckResult:
    """What `check` found; `regressed` is the gate's answer."""

    as_of: datetime
    window: timedelta
    baseline: timedelta
    max_drop: float
    min_runs: int
    scenarios: tuple[ScenarioComparison, ...]  # every scenario with a final run in either window
    new_failures: tuple[NewFailure, ...]
    scenario: str | None = None  # the scenario filter, as given
    include_test: bool = False

    @property
    def window_start(self) -> datetime:
        return self.as_of - self.window

    @property
    def baseline_start(self) -> datetime:
        return self.as_of - self.window - self.baseline

    @property
    def regressed(self) -> bool:
        return any(s.status == "regressed" for s in self.scenarios)

    @property
    def regressions(self) -> tuple[ScenarioComparison, ...]:
        return tuple(s for s in self.scenarios if s.status == "regressed")

    def to_json(self) -> dict[str, object]:
        """What `piper-etl check --json` prints (docs/analytics.md describes every key)."""
        return {
            "regressed": self.regressed,
            "as_of": self.as_of.isoformat(),
            "window": duration_text(self.window),
            "window_start": self.window_start.isoformat(),
            "baseline": duration_text(self.baseline),
            "baseline_start": self.baseline_start.isoformat(),
            "max_drop": self.max_drop,
            "min_runs": self.min_runs,
            "scenario": self.scenario,
            "include_test": self.include_test,
            "scenarios": [s.to_json() for s in self.scenarios],
            "new_failures": [f.to_json() for f in self.new_failures],
        }


@dataclass(frozen=True)
class _Bounds:
    as_of: datetime
    window_start: datetime
    baseline_start: datetime
    include_test: bool
    scenario_ids: list[str] | None

    def params(self) -> dict[str, object]:
        return {
            "as_of": self.as_of, "window_start": self.window_start, "baseline_start": self.baseline_start,
            "include_test": self.include_test, "every_scenario": self.scenario_ids is None,
            "scenario_ids": self.scenario_ids or [],
        }


COMPARED_RUNS = """
compared AS (
    SELECT run_id, scenario_id, scenario_name, status, started_at, started_at > $window_start AS in_window
    FROM run_costs
    WHERE run_is_final AND scenario_id IS NOT NULL
      AND started_at > $baseline_start AND started_at <= $as_of
      AND ($include_test OR NOT is_test)
      AND ($every_scenario OR list_contains($scenario_ids::VARCHAR[], scenario_id))
)"""

SCENARIOS_SQL = f"""
WITH {COMPARED_RUNS}
SELECT scenario_id,
       coalesce(arg_max(scenario_name, (started_at, run_id)) FILTER (WHERE scenario_name IS NOT NULL),
                scenario_id) AS scenario_name,
       count(*) FILTER (WHERE NOT in_window) AS baseline_runs,
       count(*) FILTER (WHERE NOT in_window AND status = 'passed') AS baseline_passed,
       count(*) FILTER (WHERE in_window) AS window_runs,
       count(*) FILTER (WHERE in_window AND status = 'passed') AS window_passed
FROM compared
GROUP BY scenario_id
"""

NEW_FAILURES_SQL = f"""
WITH {COMPARED_RUNS},
verdicts AS (
    SELECT r.scenario_id, r.scenario_name, r.run_id, r.started_at, r.in_window,
           c.criteria_id, c.criteria_question, c.verdict, c.criteria_result_id
    FROM criteria_results AS c
    JOIN compared AS r ON c.run_id = r.run_id
    WHERE c.criteria_id IS NOT NULL AND c.verdict IN ('PASS', 'FAIL')
),
counted AS (
    SELECT scenario_id, criteria_id,
           count(*) FILTER (WHERE in_window AND verdict = 'FAIL') AS window_fails,
           count(*) FILTER (WHERE in_window) AS window_evaluations,
           count(*) FILTER (WHERE NOT in_window AND verdict = 'FAIL') AS baseline_fails,
           count(*) FILTER (WHERE NOT in_window) AS baseline_evaluations,
           max(started_at) FILTER (WHERE in_window AND verdict = 'FAIL') AS last_failed_at,
           arg_max(criteria_question, (started_at, run_id, criteria_result_id))
               FILTER (WHERE in_window AND verdict = 'FAIL' AND criteria_question IS NOT NULL) AS criteria_question
    FROM verdicts
    GROUP BY scenario_id, criteria_id
),
names AS (
    SELECT scenario_id, coalesce(arg_max(scenario_name, (started_at, run_id)) FILTER (WHERE scenario_name IS NOT NULL),
                scenario_id) AS scenario_name
    FROM compared GROUP BY scenario_id
)
SELECT c.scenario_id, n.scenario_name, c.criteria_id, c.criteria_question, c.window_fails, c.last_failed_at,
       c.window_evaluations, c.baseline_evaluations
FROM counted AS c JOIN names AS n USING (scenario_id)
WHERE c.window_fails > 0 AND c.baseline_fails = 0
ORDER BY n.scenario_name NULLS FIRST, c.scenario_id, c.window_fails DESC, c.criteria_id
"""


def scenario_names(con: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    """Every scenario name of any run, sorted: what an unknown `--scenario` is told."""
    rows = con.execute(
        "SELECT DISTINCT scenario_name FROM run_costs WHERE scenario_name IS NOT NULL ORDER BY 1"
    ).fetchall()
    return tuple(str(row[0]) for row in rows)


def check(
    con: duckdb.DuckDBPyConnection,
    *,
    as_of: datetime,
    window: timedelta = timedelta(days=7),
    baseline: timedelta = timedelta(days=28),
    max_drop: float = 10.0,
    min_runs: int = 5,
    scenario: str | None = None,
    include_test: bool = False,
) -> CheckResult:
    """Compare each scenario's run pass rate in the window ending at `as_of` with the baseline before it.

    `as_of` without a time zone is UTC. `scenario` keeps the scenario with that id, or every scenario one of
    whose runs had that name; `UnknownScenarioError` when none has. Runs of test sessions count only with
    `include_test`. ValueError for a window or baseline that is not positive, `min_runs` below 1 or
    `max_drop` outside 0..100.
    """
    if window <= timedelta(0) or baseline <= timedelta(0):
        raise ValueError("window and baseline must be longer than zero")
    if min_runs < 1:
        raise ValueError(f"min_runs must be 1 or more, not {min_runs}")
    if not (isfinite(max_drop) and 0 <= max_drop <= 100):
        raise ValueError(f"max_drop must be between 0 and 100 percentage points, not {max_drop}")
    as_of = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)
    as_of = as_of.astimezone(UTC)
    try:
        starts = as_of - window, as_of - window - baseline
    except OverflowError:
        raise ValueError("the window and baseline reach back before the year 1") from None
    scenario_ids = None if scenario is None else _scenario_ids(con, scenario)
    bounds = _Bounds(as_of, *starts, include_test, scenario_ids)
    limit = Fraction(repr(float(max_drop)))  # the number as written: 0.1 is 1/10, not the float nearest it
    comparisons = [
        _compare(str(sid), str(name), int(b_runs), int(b_passed), int(w_runs), int(w_passed), min_runs, limit)
        for sid, name, b_runs, b_passed, w_runs, w_passed in con.execute(SCENARIOS_SQL, bounds.params()).fetchall()
    ]
    comparisons.sort(key=lambda s: (
        STATUS_ORDER[s.status], -(s.drop_points if s.drop_points is not None else -1000.0),
        s.scenario_name, s.scenario_id,
    ))
    failures = tuple(
        NewFailure(str(sid), str(name), str(cid), question, int(fails), last.astimezone(UTC), int(w_eval), int(b_eval))
        for sid, name, cid, question, fails, last, w_eval, b_eval
        in con.execute(NEW_FAILURES_SQL, bounds.params()).fetchall()
    )
    return CheckResult(as_of, window, baseline, float(max_drop), min_runs, tuple(comparisons), failures,
                       scenario, include_test)


def _scenario_ids(con: duckdb.DuckDBPyConnection, scenario: str) -> list[str]:
    rows = con.execute(
        "SELECT DISTINCT scenario_id FROM run_costs WHERE scenario_id IS NOT NULL "
        "AND (scenario_id = $s OR scenario_name = $s) ORDER BY 1",
        {"s": scenario},
    ).fetchall()
    if not rows:
        raise UnknownScenarioError(scenario, scenario_names(con))
    return [str(row[0]) for row in rows]


def _compare(
    scenario_id: str, name: str, baseline_runs: int, baseline_passed: int, window_runs: int, window_passed: int,
    min_runs: int, limit: Fraction,
) -> ScenarioComparison:
    baseline_rate = Fraction(baseline_passed, baseline_runs) if baseline_runs else None
    window_rate = Fraction(window_passed, window_runs) if window_runs else None
    drop = None if baseline_rate is None or window_rate is None else (baseline_rate - window_rate) * 100
    status: Status
    if drop is None or baseline_runs < min_runs or window_runs < min_runs:
        status = "not judged"
    else:
        status = "regressed" if drop > limit else "held"
    return ScenarioComparison(
        scenario_id, name, baseline_runs, None if baseline_rate is None else float(baseline_rate),
        window_runs, None if window_rate is None else float(window_rate), None if drop is None else float(drop),
        status, baseline_passed, window_passed,
    )


DURATION_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
_DURATION = re.compile(r"([0-9]{1,6})([wdhm])")


def parse_duration(text: str) -> timedelta:
    """`7d`, `12h`, `90m`, `2w`: a whole number above zero and one unit; ValueError for anything else."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"not a duration: {text!r} (a whole number above 0 and a unit: 90m, 12h, 7d, 2w)")
    return int(match[1]) * DURATION_UNITS[match[2]]


def duration_text(span: timedelta) -> str:
    """`7d`, `12h`, `90m` read back from a timedelta: its largest whole unit of d, h, m (else seconds)."""
    seconds = int(span.total_seconds())
    if seconds != span.total_seconds():
        return f"{span.total_seconds()}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
