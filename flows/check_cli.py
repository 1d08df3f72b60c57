"""`piper-etl check`: the regression gate over an output folder (warehouse/regressions.py); exit 1 on a regression."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from flows.settings import configured_out_dir, out_root

if TYPE_CHECKING:
    from rich.console import Console

    from warehouse.regressions import CheckResult

EXIT_OK, EXIT_REGRESSED = 0, 1


def duration(text: str) -> timedelta:
    from warehouse.regressions import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def as_of_time(text: str) -> datetime:
    """An ISO time (UTC when it names no offset), or a date: the end of that UTC day (the next midnight)."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"not an ISO time or date: {text!r} (2026-11-30T12:00, 2026-11-30T12:00+01:00 or 2026-11-30)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def max_drop_points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 100:  # also NaN
        raise argparse.ArgumentTypeError(f"not a number of percentage points from 0 to 100: {text!r}")
    return value


def min_runs_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of runs, 1 or more: {text!r}")
    return value


def add_check_command(commands: Any) -> None:
    """Add `check` to the `piper-etl` subcommands."""
    check = commands.add_parser(
        "check",
        help="the regression gate: exit 1 when a scenario's pass rate fell against its baseline",
        description="Compare each scenario's run pass rate (final runs) in the window ending at --as-of with the "
        "baseline window just before it, list the scenarios whose rate fell by more than --max-drop percentage "
        "points and the criteria that failed in the window but never in the baseline. Reads the store `report` "
        "reads and names it on stderr. Exit status 0 when nothing regressed, 1 when a scenario regressed, "
        "2 for usage errors. Runs of test sessions are left out unless --include-test.",
    )
    check.add_argument(
        "--out", default=str(configured_out_dir()), metavar="DIR",
        help="output folder or object-store URL (env PIPER_OUT_DIR)"
    )
    check.add_argument("--window", type=duration, default="7d", metavar="SPAN",
                       help="the window judged, ending at --as-of: 90m, 12h, 7d, 2w")
    check.add_argument("--baseline", type=duration, default="28d", metavar="SPAN",
                       help="the baseline window, just before the window")
    check.add_argument("--max-drop", type=max_drop_points, default="10", metavar="POINTS",
                       help="a scenario regressed when its pass rate fell by more than this many percentage "
                       "points")
    check.add_argument("--min-runs", type=min_runs_count, default="5", metavar="N",
                       help="scenarios with fewer final runs in either window are not judged")
    check.add_argument("--as-of", type=as_of_time, metavar="TIME",
                       help="the window's end: an ISO time (UTC unless it names an offset) or a date (the end "
                       "of that UTC day); default now")
    check.add_argument("--scenario", metavar="NAME", help="only the scenario with this exact name (or id)")
    check.add_argument("--include-test", action="store_true", help="count the runs of test sessions too")
    check.add_argument("--json", action="store_true", help="print the result as one JSON document")


def run_check(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    """Run `check`: 0 nothing regressed, 1 a scenario regressed; usage errors raise UsageError (exit 2)."""
    from flows.errors import UsageError
    from warehouse.reader import open_analytics
    from warehouse.regressions import UnknownScenarioError, check

    out = sys.stdout if stdout is None else stdout
    opened = open_analytics(out_root(args.out))  # NoOutputError: main() prints it, exit 2 (as `report`)
    try:
        print(f"piper-etl check: {opened.source_line()}", file=sys.stderr)  # stderr: stdout stays the result
        try:
            result = check(
                opened.con, as_of=args.as_of or datetime.now(UTC), window=args.window, baseline=args.baseline,
                max_drop=args.max_drop, min_runs=args.min_runs, scenario=args.scenario,
                include_test=args.include_test,
            )
        except UnknownScenarioError as exc:
            raise UsageError(str(exc)) from None
        except ValueError as exc:  # a window reaching before the year 1
            raise UsageError(str(exc)) from None
    finally:
        opened.close()
    if args.json:
        out.write(json.dumps(result.to_json(), indent=2) + "\n")  # ASCII: escapes reach no terminal raw
    else:
        from flows.analytics_cli import terminal_console

        print_check(result, terminal_console(out))
    return EXIT_REGRESSED if result.regressed else EXIT_OK


def print_check(result: CheckResult, console: Console) -> None:
    """The comparison table, the new failing criteria and the verdict, as `piper-etl check` prints them."""
    from warehouse.regressions import duration_text

    console.print(
        f"[bold]Regression check[/] as of {_time(result.as_of)} UTC: window {duration_text(result.window)} "
        f"(after {_time(result.window_start)}) against the baseline {duration_text(result.baseline)} before it "
        f"(after {_time(result.baseline_start)}); regressed = run pass rate more than {result.max_drop:g} points "
        f"below the baseline, with at least {result.min_runs} final runs in each"
        + ("" if result.include_test else "; test sessions left out")
        + (f"; scenario {_text(result.scenario)}" if result.scenario is not None else "")
    )
    if not result.scenarios:
        console.print("No final run started in either window: nothing to judge.")
        return
    console.print("\n[bold]Scenarios[/]: run pass rate of final runs, baseline then window")
    console.print(_scenario_table(result))
    if result.new_failures:
        console.print("\n[bold]New failing criteria[/]: failed in the window, never in the baseline")
        console.print(_failure_table(result))
    else:
        console.print("\nNo criterion failed in the window that never failed in the baseline.")
    regressed = result.regressions
    if regressed:
        names = ", ".join(_text(s.scenario_name) for s in regressed)
        plural = "" if len(regressed) == 1 else "s"
        console.print(f"\n[bold red]REGRESSED[/]: {len(regressed)} scenario{plural}: {names}")
    else:
        counts = {status: sum(s.status == status for s in result.scenarios) for status in ("held", "not judged")}
        console.print(f"\nNo scenario regressed ({counts['held']} held, {counts['not judged']} not judged).")


def _scenario_table(result: CheckResult) -> Any:
    table = _table()
    table.add_column("scenario", max_width=40, overflow="ellipsis", no_wrap=True)
    for name in ("baseline\nruns", "baseline\npass", "window\nruns", "window\npass", "drop\npoints"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for s in result.scenarios:
        style = {"regressed": "bold red", "held": "green"}.get(s.status, "dim")
        table.add_row(
            _text(s.scenario_name), str(s.baseline_runs), percent(s.baseline_pass_rate), str(s.window_runs),
            percent(s.window_pass_rate), points(s.drop_points), f"[{style}]{s.status}[/]",
        )
    return table


def _failure_table(result: CheckResult) -> Any:
    table = _table()
    table.add_column("scenario", max_width=24, overflow="ellipsis", no_wrap=True)
    table.add_column("criterion", overflow="fold")
    table.add_column("fails", justify="right", no_wrap=True)
    table.add_column("baseline", no_wrap=True)
    table.add_column("last failed", no_wrap=True)
    for f in result.new_failures:
        table.add_row(
            _text(f.scenario_name), _text(f.criteria_question or f.criteria_id),
            f"{f.window_fails}/{f.window_evaluations}",
            "not evaluated" if not f.baseline_evaluations else f"passed {f.baseline_evaluations}",
            _time(f.last_failed_at),
        )
    return table


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def points(drop: float | None) -> str:
    return "–" if drop is None else f"{drop:.1f}"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _table() -> Any:
    from rich import box
    from rich.table import Table

    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1))


def _text(value: str) -> str:
    from rich.markup import escape

    from warehouse.report_text import terminal_safe

    return escape(terminal_safe(value))
