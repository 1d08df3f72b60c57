"""The report opens with what changed in the week before it: regressions (as `check`), new failures, newly flaky.

Hand-built histories with known answers (tests/history_builder.py); the command-line tests use runs dated
relative to now, since the report judges the week before the time it is made.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from tests.conftest import Cli
from tests.history_builder import HistoryRun
from tests.test_check_cli import write_history
from tests.test_report_charts import history_report
from warehouse.report_changes import Changes
from warehouse.report_data import ReportData
from warehouse.report_html import render_html
from warehouse.report_markdown import summary_markdown
from warehouse.report_terminal import print_report

AS_OF = datetime(2026, 11, 30, 12, tzinfo=UTC)
RULE = "run pass rate more than 10 points below the 28 days before, with at least 5 final runs in each"


def at(days_before: float, as_of: datetime = AS_OF) -> str:
    return (as_of - timedelta(days=days_before)).isoformat()


def runs(scenario: str, days_before: list[float], verdicts: str, crit: str = "c1",
         as_of: datetime = AS_OF) -> list[HistoryRun]:
    """One run per day offset, verdicts as P (PASS) and F (FAIL); a run with a FAIL has status failed."""
    names = {"P": "PASS", "F": "FAIL"}
    return [HistoryRun(scenario, at(day, as_of), {crit: names[v]})
            for day, v in zip(days_before, verdicts, strict=True)]


def history(as_of: datetime = AS_OF) -> list[HistoryRun]:
    return [
        *runs("Refund", [30, 25, 20, 15, 12, 9], "PPPPPP", as_of=as_of),       # baseline: 6 of 6 pass
        *runs("Refund", [6, 5, 4, 3, 2], "PPFFF", as_of=as_of),                # window: 2 of 5: regressed, new failure
        *runs("Cancel", [20, 18, 16, 14, 12], "PPPPP", crit="c2", as_of=as_of),
        *runs("Cancel", [6, 5, 4, 3, 2], "PPPPP", crit="c2", as_of=as_of),     # held
        *runs("Upgrade", [4, 3, 2, 1], "PFPF", crit="c3", as_of=as_of),        # flaky, flipped this week
        *runs("Old", [70, 68, 66, 64, 62], "PFPFP", crit="c4", as_of=as_of),   # flaky, last flip two months ago
    ]


def rendered(data: ReportData) -> tuple[str, str, str]:
    printed = io.StringIO()
    print_report(data, Console(file=printed, width=100))
    return render_html(data), printed.getvalue(), summary_markdown(data)


def test_regressions_new_failures_and_newly_flaky_criteria_with_known_answers() -> None:
    changes = changes_at(history(), AS_OF)
    assert [(s.scenario_name, s.status) for s in changes.check.scenarios] == [
        ("Refund", "regressed"), ("Cancel", "held"), ("Upgrade", "not judged")]
    refund = changes.check.regressions[0]
    assert (refund.baseline_runs, refund.window_runs, refund.drop_points) == (6, 5, 60.0)
    assert [(f.scenario_name, f.criteria_id) for f in changes.check.new_failures] == [("Refund", "c1"),
                                                                                      ("Upgrade", "c3")]
    assert [(row["scenario_name"], row["criteria_id"]) for row in changes.newly_flaky] == [("Upgrade", "c3")]
    assert changes.regression_line() == f"1 scenario regressed ({RULE}): Refund."
    assert changes.new_failures_line() == "2 criteria failed in these 7 days and never in the 28 days before."
    assert changes.flaky_line().startswith("1 criterion flaky with a verdict flip in these 7 days (flaky: at least")


def changes_at(runs: list[HistoryRun], as_of: datetime) -> Changes:
    changes = history_report(runs, as_of=as_of).changes
    assert changes is not None
    return changes


def test_every_form_opens_with_what_changed() -> None:
    page, terminal, markdown = rendered(history_report(history(), as_of=AS_OF))
    window = "What changed in the 7 days before 2026-11-30 12:00 UTC"
    assert page.index(window) < page.index('<div id="pass-rate-over-time"')  # before the charts
    assert f'<p class="verdict bad">1 scenario regressed ({RULE}): Refund.</p>' in page
    assert "<td>Question c3?</td><td>Upgrade</td><td class=\"n\">2 of 4</td><td>not evaluated</td>" in page
    assert "<td>Question c1?</td><td>Refund</td><td class=\"n\">3 of 5</td><td>passed all 6</td>" in page
    flat = " ".join(terminal.split())
    assert window in flat and f"1 scenario regressed ({RULE}): Refund." in flat
    assert flat.index(window) < flat.index("Scenarios (pass rates")
    assert "Regressed scenarios" in flat and "Failing for the first time" in flat and "Newly flaky" in flat
    assert max(len(line) for line in terminal.splitlines()) <= 100
    assert f"**REGRESSED:** 1 scenario regressed ({RULE}): Refund." in markdown
    assert "| Question c3? | Upgrade | 3 | 50.0% |" in markdown


def test_nothing_regressed_is_said_plainly() -> None:
    held = [run for run in history() if run.scenario != "Refund"]
    page, terminal, markdown = rendered(history_report(held, as_of=AS_OF))
    line = f"Nothing regressed ({RULE}): 1 held, 1 not judged (fewer than 5 final runs in a window)."
    assert f'<p class="verdict ok">{line}</p>' in page
    assert line in " ".join(terminal.split()) and line in markdown and "REGRESSED" not in markdown
    assert "Regressed scenarios" not in terminal


def test_nothing_to_compare_names_the_newest_run() -> None:
    changes = changes_at(history(), AS_OF + timedelta(days=60))
    assert changes.regression_line() == (
        "Nothing regressed: no final run started in these 7 days or in the 28 days before, so there is nothing "
        "to compare; the newest final run started 2026-11-29 12:00 UTC.")
    assert changes.check.new_failures == () and changes.newly_flaky == []
    assert changes.new_failures_line() == \
        "No criterion failed in these 7 days that had not failed in the 28 days before."


def test_the_report_filters_apply_and_since_does_not_hide_the_baseline(cli: Cli, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    write_history(tmp_path, [*history(now), *runs("Probe", [20, 18, 16, 14, 12, 6, 5, 4, 3, 2], "PPPPPFFFFF",
                                                  crit="c9", as_of=now)], test_scenarios=["Probe"])
    since = (now - timedelta(days=3)).date().isoformat()
    result = cli("report", "--out", str(tmp_path), "--since", since, "--html", str(tmp_path / "r.html"))
    assert result.code == 0, result.stderr
    flat = " ".join(result.stdout.split())
    assert f"1 scenario regressed ({RULE}): Refund." in flat  # the baseline before --since still counts
    with_tests = " ".join(cli("report", "--out", str(tmp_path), "--include-test").stdout.split())
    assert f"2 scenarios regressed ({RULE}): Probe, Refund." in with_tests  # the larger drop first
    only_cancel = " ".join(cli("report", "--out", str(tmp_path), "--scenario", "Cancel").stdout.split())
    assert f"Nothing regressed ({RULE}): 1 held, 0 not judged" in only_cancel


def test_long_lists_are_cut_in_the_terminal_and_markdown_but_whole_in_html() -> None:
    criteria = [f"c{n:02d}" for n in range(12)]
    runs = [HistoryRun("Refund", at(day), {crit: "PASS" for crit in criteria}) for day in (20, 15, 10)]
    runs += [HistoryRun("Refund", at(day), {crit: "FAIL" for crit in criteria}) for day in (3, 2)]
    page, terminal, markdown = rendered(history_report(runs, as_of=AS_OF))
    assert "12 criteria failed in these 7 days and never in the 28 days before." in page
    assert all(f"<td>Question {crit}?</td>" in page for crit in criteria)
    opening = terminal.split("Scenarios (pass rates")[0]
    assert "(2 more in the HTML report)" in opening and "Question c09?" in opening and "Question c10?" not in opening
    assert "(2 more: `piper-etl check` lists them all.)" in markdown
