"""The report in a terminal: a few rich tables that stay readable at 100 columns."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from warehouse.report_changes import Changes
from warehouse.report_data import ReportData, Row, excerpt, pct, scenario_label, seconds, tokens, usd
from warehouse.report_text import terminal_safe

DAYS_SHOWN = 14
CHANGES_SHOWN = 10
"""New failing and newly flaky criteria printed; the HTML report lists them all."""
LOADS_SHOWN = 10


def print_report(data: ReportData, console: Console) -> None:
    """Print the headline, the price note and the scenario, criteria, day and load tables."""
    t = data.totals
    console.print(f"[bold]Piper report[/] over {_text(str(data.source))} ({_text(data.filters)})")
    console.print(
        f"{t['runs']} runs, {t['runs_final']} final: run pass rate {pct(t['run_pass_rate'])}, criteria pass rate "
        f"{pct(t['criteria_pass_rate'])}; judge tokens {tokens(t['input_tokens'])} in / "
        f"{tokens(t['output_tokens'])} out; estimated cost {usd(t['estimated_cost_usd'])}"
    )
    console.print(_text(data.price.line()), style=None if data.price.is_set else "yellow")
    if data.changes is not None:
        _print_changes(data.changes, console)
    if not t["runs"]:
        console.print("No runs match: nothing to tabulate.")
        return
    console.print(_scenarios(data.scenarios, console.width))
    if data.criteria:
        console.print(_criteria(data.criteria))
    console.print(_days(data.daily))
    if data.loads:
        console.print(_loads(data.loads))


def _print_changes(changes: Changes, console: Console) -> None:
    """What changed in the week before the report: regressions, new failures and newly flaky criteria."""
    result = changes.check
    console.print(f"\n[bold]What changed[/] in {_text(changes.window_text)}")
    console.print(_text(changes.regression_line()), style="bold red" if result.regressed else "green")
    if result.regressed:
        table = _table("Regressed scenarios: run pass rate of final runs, baseline then window")
        table.add_column("scenario", max_width=40, overflow="fold")
        for name in ("baseline\nruns", "baseline\npass", "window\nruns", "window\npass", "drop\npoints"):
            table.add_column(name, justify="right", no_wrap=True)
        for s in result.regressions:
            table.add_row(_text(s.scenario_name), str(s.baseline_runs), pct(s.baseline_pass_rate), str(s.window_runs),
                          pct(s.window_pass_rate), "–" if s.drop_points is None else f"{s.drop_points:.1f}")
        console.print(table)
    console.print(_text(changes.new_failures_line()))
    if result.new_failures:
        table = _table("Failing for the first time: fails in the window's final runs")
        table.add_column("criterion (scenario)", ratio=1, overflow="fold")
        table.add_column("fails", justify="right", no_wrap=True)
        table.add_column("last failed", no_wrap=True)
        for f in result.new_failures[:CHANGES_SHOWN]:
            table.add_row(f"{_text(f.criteria_question or f.criteria_id)} [dim]({_excerpt(f.scenario_name, 30)})[/]",
                          f"{f.window_fails}/{f.window_evaluations}", f"{f.last_failed_at:%Y-%m-%d %H:%M}")
        console.print(table)
        _more(len(result.new_failures), console)
    console.print(_text(changes.flaky_line()))
    if changes.newly_flaky:
        table = _table("Newly flaky: flips and pass rate in the last 10 evaluations")
        table.add_column("criterion (scenario)", ratio=1, overflow="fold")
        for name in ("flips", "pass", "last", "last flip"):
            table.add_column(name, justify="left" if name == "last flip" else "right", no_wrap=True)
        for row in changes.newly_flaky[:CHANGES_SHOWN]:
            table.add_row(
                f"{_text(row['criteria_question'] or row['criteria_id'] or '')} "
                f"[dim]({_excerpt(scenario_label(row), 30)})[/]",
                str(row["recent_flips"]), pct(row["recent_pass_rate"]), _text(str(row["last_verdict"])),
                f"{row['last_flip_at']:%Y-%m-%d %H:%M}",
            )
        console.print(table)
        _more(len(changes.newly_flaky), console)
    console.print()


def _more(count: int, console: Console) -> None:
    if count > CHANGES_SHOWN:
        console.print(f"({count - CHANGES_SHOWN} more in the HTML report)", style="dim")


def _table(title: str) -> Table:
    # One space of box plus one of padding between columns: a table costs 2 characters per column.
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1)
    )


def _scenarios(scenarios: list[Row], width: int) -> Table:
    table = _table("Scenarios (pass rates count final runs and PASS/FAIL verdicts only)")
    table.caption = (
        "fail, err: failed and error runs; not final: pending or running; other: criteria verdicts other than "
        "PASS/FAIL; p95 s: 95th percentile run duration; tokens: judge input + output"
    )
    table.caption_justify = "left"
    # The numbers keep their width (72 characters with the gaps); only the scenario name gives way.
    table.add_column("scenario", max_width=max(12, min(40, width - 72)), overflow="ellipsis", no_wrap=True)
    numbers = {"runs": 4, "run\npass": 6, "fail": 4, "err": 3, "not\nfinal": 5, "crit\npass": 6, "other": 5,
               "p95\ns": 4, "tokens": 6, "cost": 7}
    for name, width in numbers.items():
        table.add_column(name, justify="right", no_wrap=True, min_width=width)
    for row in scenarios:
        table.add_row(
            _text(scenario_label(row)),
            str(row["runs"]),
            pct(row["run_pass_rate"]),
            str(row["runs_failed"]),
            str(row["runs_error"]),
            str(row["runs_not_final"]),
            pct(row["criteria_pass_rate"]),
            str(row["criteria_other_verdicts"]),
            seconds(row["p95_duration_seconds"]),
            tokens(_total(row["input_tokens"], row["output_tokens"])),
            usd(row["estimated_cost_usd"]),
        )
    return table


def _criteria(criteria: list[Row]) -> Table:
    table = _table("Criteria that fail most, with the latest failing critique")
    table.add_column("fails", justify="right", no_wrap=True)
    table.add_column("pass", justify="right", no_wrap=True)
    table.add_column("criterion (scenario)", ratio=1, max_width=40, overflow="fold")
    table.add_column("latest failing critique", ratio=1, max_width=44, overflow="fold")
    for row in criteria:
        question = _excerpt(row["criteria_question"] or row["criteria_id"], 70)
        table.add_row(
            str(row["fails"]),
            pct(row["pass_rate"]),
            f"{question} [dim]({_excerpt(scenario_label(row), 30)})[/]",
            _excerpt(row["latest_failing_critique"], 120),
        )
    return table


def _days(daily: list[Row]) -> Table:
    totals: dict[date, Row] = defaultdict(lambda: defaultdict(int))
    for row in daily:
        day = totals[row["day"]]
        for key in ("runs", "runs_passed", "runs_not_final", "criteria_passed", "criteria_failed"):
            day[key] += row[key] or 0
        day["final"] += row["runs"] - row["runs_not_final"]
        day["tokens"] += _total(row["input_tokens"], row["output_tokens"]) or 0
        if row["estimated_cost_usd"] is not None:
            day["cost"] = (day.get("cost") or 0.0) + row["estimated_cost_usd"]
    shown = sorted(totals)[-DAYS_SHOWN:]
    table = _table(f"By UTC day, all scenarios (last {len(shown)} days with runs)")
    for name in ("day", "runs", "run pass", "crit pass", "tokens", "cost"):
        table.add_column(name, justify="left" if name == "day" else "right", no_wrap=True)
    for day_key in shown:
        day = totals[day_key]
        judged = day["criteria_passed"] + day["criteria_failed"]
        table.add_row(
            str(day_key),
            str(day["runs"]),
            pct(day["runs_passed"] / day["final"] if day["final"] else None),
            pct(day["criteria_passed"] / judged if judged else None),
            tokens(day["tokens"]),
            usd(day.get("cost")),
        )
    return table


def _loads(loads: list[Row]) -> Table:
    table = _table(f"Loads (last {min(len(loads), LOADS_SHOWN)} of {len(loads)})")
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for name in ("sessions", "loaded", "skipped", "not found", "failed", "runs written"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in loads[-LOADS_SHOWN:]:
        started = row["started_at"]
        table.add_row(
            started.strftime("%Y-%m-%d %H:%M:%S") if started else "–",
            _text(str(row["status"])),
            str(row["sessions_requested"]),
            str(row["sessions_loaded"]),
            str(row["sessions_skipped"]),
            str(row["sessions_not_found"]),
            str(row["sessions_failed"] + row["sessions_rejected"]),
            str(row["runs_written"]),
        )
    return table


def _text(text: str) -> str:
    """API text as rich markup that prints exactly its visible characters (see warehouse/report_text.py)."""
    return escape(terminal_safe(text))


def _excerpt(text: str | None, limit: int) -> str:
    # Cleaned before it is cut, so the limit counts visible characters and no cut splits an escape sequence.
    return escape(excerpt(terminal_safe(text) if text else text, limit))


def _total(input_tokens: int | None, output_tokens: int | None) -> int | None:
    if input_tokens is None and output_tokens is None:
        return None
    return (input_tokens or 0) + (output_tokens or 0)
