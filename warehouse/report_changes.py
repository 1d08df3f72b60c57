"""What changed, the report's opening: regressions as `check` finds them, and newly flaky criteria.

Both look at the week before the report's time (`as_of`): the regressions are `regressions.check` with its
defaults (a 7-day window against the 28-day baseline before it, more than 10 points down, at least 5 final
runs in each); a criterion is newly flaky when `criteria_stability` calls it flaky and its verdict last
flipped in that week. The sentences are made here once, so the HTML, terminal and markdown forms say the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from warehouse.regressions import CheckResult, check, duration_text
from warehouse.report_data import Row, rows

WINDOW = timedelta(days=7)
"""The week the report looks back on (check's default window)."""

NEWLY_FLAKY_SQL = """
SELECT * FROM criteria_stability
WHERE flaky AND last_flip_at > ? AND last_flip_at <= ? AND (? OR NOT is_test)
ORDER BY last_flip_at DESC, scenario_name NULLS LAST, criteria_question NULLS LAST, criteria_id, is_test
"""


@dataclass(frozen=True)
class Changes:
    """The week before `as_of`: what `check` found and the criteria that turned flaky."""

    check: CheckResult
    newly_flaky: list[Row]  # criteria_stability rows
    newest_final_run_at: datetime | None  # to say why there is nothing to compare

    @property
    def window_text(self) -> str:
        return f"the {_days(self.check.window)} before {self.check.as_of:%Y-%m-%d %H:%M} UTC"

    def regression_line(self) -> str:
        """One sentence: which scenarios regressed, or that none did and why."""
        result = self.check
        rule = (f"run pass rate more than {result.max_drop:g} points below the {_days(result.baseline)} before, "
                f"with at least {result.min_runs} final runs in each")
        regressed = result.regressions
        if regressed:
            names = ", ".join(s.scenario_name for s in regressed)
            return f"{_count(len(regressed), 'scenario')} regressed ({rule}): {names}."
        if not result.scenarios:
            newest = "" if self.newest_final_run_at is None else \
                f"; the newest final run started {self.newest_final_run_at:%Y-%m-%d %H:%M} UTC"
            return (f"Nothing regressed: no final run started in these {_days(result.window)} or in the "
                    f"{_days(result.baseline)} before, so there is nothing to compare{newest}.")
        held = sum(s.status == "held" for s in result.scenarios)
        unjudged = len(result.scenarios) - held
        return (f"Nothing regressed ({rule}): {held} held, {unjudged} not judged "
                f"(fewer than {result.min_runs} final runs in a window).")

    def new_failures_line(self) -> str:
        failures = self.check.new_failures
        before = f"the {_days(self.check.baseline)} before"
        if not failures:
            return f"No criterion failed in these {_days(self.check.window)} that had not failed in {before}."
        return (f"{_count(len(failures), 'criterion', 'criteria')} failed in these {_days(self.check.window)} "
                f"and never in {before}.")

    def flaky_line(self) -> str:
        rule = "at least 2 verdict flips and a pass rate from 20 % to 80 % in its last 10 evaluations"
        days = _days(self.check.window)
        if not self.newly_flaky:
            return f"No criterion is flaky with a verdict flip in these {days} (flaky: {rule})."
        return (f"{_count(len(self.newly_flaky), 'criterion', 'criteria')} flaky with a verdict flip in these "
                f"{days} (flaky: {rule}).")


def find_changes(con: duckdb.DuckDBPyConnection, *, as_of: datetime, include_test: bool) -> Changes:
    """What changed in the week before `as_of`, over the runs `con` holds (the report's filters already applied)."""
    as_of = as_of.astimezone(UTC)
    result = check(con, as_of=as_of, window=WINDOW, include_test=include_test)
    newest = con.execute(
        "SELECT max(started_at) FROM run_costs WHERE run_is_final AND started_at <= ? AND (? OR NOT is_test)",
        [as_of, include_test],
    ).fetchone()
    return Changes(
        check=result,
        newly_flaky=rows(con, NEWLY_FLAKY_SQL, [as_of - WINDOW, as_of, include_test]),
        newest_final_run_at=newest[0] if newest else None,
    )


def _days(span: timedelta) -> str:
    text = duration_text(span)
    return f"{text[:-1]} days" if text.endswith("d") else text


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"
