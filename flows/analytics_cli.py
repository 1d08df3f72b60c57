"""`piper-etl report` and `piper-etl sql`: read an output folder without ever blocking a load."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from flows.check_cli import add_check_command
from flows.settings import configured_out_dir, out_root

if TYPE_CHECKING:
    from rich.console import Console

    from warehouse.objstore import Root
    from warehouse.reader import Analytics

EXIT_OK, EXIT_QUERY_FAILED, EXIT_USAGE = 0, 1, 2
SQL_ROWS_SHOWN = 1000
BASE_TABLES = ("runs", "turns", "criteria_results", "fetch_log", "loads", "rejected_payloads", "token_prices",
               "sessions", "scenarios", "scenario_criteria", "sync_state")


def add_pricing_arguments(parser: argparse.ArgumentParser) -> None:
    """`--pricing FILE` and `--judge-model NAME`, defaulting to PIPER_PRICING_FILE and PIPER_JUDGE_MODEL."""
    parser.add_argument(
        "--pricing",
        metavar="FILE",
        default=os.environ.get("PIPER_PRICING_FILE") or None,
        help="TOML file of judge token prices in USD per million tokens (env PIPER_PRICING_FILE); "
        "see docs/pricing.example.toml",
    )
    parser.add_argument(
        "--judge-model",
        metavar="NAME",
        default=os.environ.get("PIPER_JUDGE_MODEL") or None,
        help="the judge model whose price costs the runs (env PIPER_JUDGE_MODEL; "
        "default: the only model in the pricing file)",
    )


def utc_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def add_analytics_commands(commands: Any) -> None:
    """Add `report`, `sql` and `check` to the `piper-etl` subcommands."""
    report = commands.add_parser(
        "report",
        help="print pass rates, failing criteria and judge cost; write an offline HTML report",
        description="Print what changed in the last 7 days (regressions as `piper-etl check` finds them, criteria "
        "failing for the first time, newly flaky criteria), then the key tables of an output folder (scenarios, the "
        "criteria that fail most, days, loads), and write a self-contained HTML report with interactive charts that "
        "opens without network. "
        "Reads OUT/parquet when it has files, else the snapshot OUT/piper-bi.duckdb, and names the one it reads "
        "on stderr; never the file a load writes. Runs of test sessions are left out unless --include-test.",
    )
    report.add_argument(
        "--out", default=str(configured_out_dir()), metavar="DIR",
        help="output folder or object-store URL (env PIPER_OUT_DIR)"
    )
    report.add_argument("--html", metavar="FILE", help="where to write the HTML report (default OUT/report.html; "
                        "./report.html for an object-store OUT)")
    report.add_argument("--since", type=utc_date, metavar="DATE", help="only runs started on or after DATE (UTC)")
    report.add_argument("--scenario", metavar="NAME", help="only runs of the scenario with this exact name")
    report.add_argument("--agent", metavar="AGENT", help="only runs of the agent with this id or exact name")
    report.add_argument("--tag", metavar="TAG", help="only runs of scenarios with this tag")
    report.add_argument(
        "--include-test", action="store_true",
        help="count the runs of test sessions too (shown apart, as '(test sessions)'); by default they are left out",
    )
    add_pricing_arguments(report)

    sql = commands.add_parser(
        "sql",
        help="query the tables and analytics views of an output folder",
        description="Open an in-memory DuckDB with the current state of OUT/parquet (or, for a DuckDB-only "
        "output, the snapshot OUT/piper-bi.duckdb) and the analytics views, and run QUERY. Without QUERY, list "
        "the tables and views. The store it reads is named on stderr. Exit status 1 when the query fails.",
    )
    sql.add_argument("query", nargs="?", metavar="QUERY", help="SQL to run ('-' reads it from stdin)")
    sql.add_argument(
        "--out", default=str(configured_out_dir()), metavar="DIR",
        help="output folder or object-store URL (env PIPER_OUT_DIR)"
    )
    sql.add_argument("--csv", action="store_true", help="print the result as CSV (every row) instead of a table")
    add_pricing_arguments(sql)
    add_check_command(commands)  # `check` (flows/check_cli.py): the regression gate


def run(args: argparse.Namespace, stdin: TextIO, stdout: TextIO | None = None) -> int:
    """Run `report` or `sql`; usage problems print one error line and return 2. Output goes to `stdout`."""
    from flows.settings import price_list
    from warehouse.reader import NoOutputError, open_analytics

    prices = price_list(args.pricing, args.judge_model)  # PiperConfigError: main() prints it, exit 2
    since = getattr(args, "since", None)
    try:
        opened = open_analytics(
            out_root(args.out),
            prices=prices,
            since=datetime(since.year, since.month, since.day, tzinfo=UTC) if since else None,
            scenario=getattr(args, "scenario", None),
            agent=getattr(args, "agent", None),
            tag=getattr(args, "tag", None),
            include_test=getattr(args, "include_test", True),  # `sql` shows every run
        )
    except NoOutputError as exc:
        print(f"piper-etl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"piper-etl {args.command}: {opened.source_line()}", file=sys.stderr)  # stderr: stdout stays the data
    try:
        if args.command == "report":
            return _report(args, opened)
        return _sql(args, opened, stdin, sys.stdout if stdout is None else stdout)
    finally:
        opened.close()


def write_report(out_dir: Path, html: Path) -> Path:
    """Write the HTML report of everything in `out_dir` (what the demo ends with)."""
    from warehouse.reader import open_analytics
    from warehouse.report_data import collect
    from warehouse.report_html import write_html

    opened = open_analytics(out_dir)
    try:
        data = collect(opened)
    finally:
        opened.close()
    return write_html(data, html)


def _report(args: argparse.Namespace, opened: Analytics) -> int:
    from warehouse.report_data import collect
    from warehouse.report_html import write_html
    from warehouse.report_terminal import print_report

    history = None
    if args.since is not None:  # what changed compares with the weeks before: the same runs without the --since cut
        from warehouse.reader import open_analytics

        history = open_analytics(out_root(args.out), scenario=args.scenario, agent=args.agent, tag=args.tag,
                                 include_test=args.include_test)
    try:
        data = collect(opened, since=args.since, scenario=args.scenario, agent=args.agent, tag=args.tag,
                       include_test=args.include_test, history=history)
    finally:
        if history is not None:
            history.close()
    console = terminal_console()
    print_report(data, console)
    started = time.perf_counter()
    path = write_html(data, Path(args.html) if args.html else default_html(out_root(args.out)))
    console.print(
        f"\nHTML report ({path.stat().st_size / 1e6:.1f} MB, written in {time.perf_counter() - started:.1f} s; "
        "it opens offline in any browser):"
    )
    console.print(f"  {path}", soft_wrap=True, markup=False)  # one line, whatever its length: easy to copy
    return EXIT_OK


def default_html(out: Root) -> Path:
    """Where `report` writes its HTML without `--html`: OUT/report.html, or for an object store ./report.html."""
    return out / "report.html" if isinstance(out, Path) else Path("report.html")


def _sql(args: argparse.Namespace, opened: Analytics, stdin: TextIO, stdout: TextIO) -> int:
    import duckdb

    from warehouse.report_text import terminal_safe

    query = stdin.read() if args.query == "-" else args.query
    if not (query or "").strip():
        _list_views(opened)
        return EXIT_OK
    try:
        cursor = opened.con.execute(query)
        names = [d[0] for d in cursor.description] if cursor.description else []
        rows = cursor.fetchall() if names and args.csv else cursor.fetchmany(SQL_ROWS_SHOWN + 1) if names else []
    except duckdb.Error as exc:
        print(f"piper-etl sql: error: {terminal_safe(str(exc))}", file=sys.stderr)  # it may quote the data
        return EXIT_QUERY_FAILED
    if not names:
        return EXIT_OK
    if args.csv:
        # CSV to a file or a pipe is the data, byte for byte; only a terminal gets it cleaned.
        if stdout.isatty():
            names = [terminal_safe(name) for name in names]
            rows = [tuple(terminal_safe(v) if isinstance(v, str) else v for v in row) for row in rows]
        _write_csv(stdout, names, rows)
        return EXIT_OK
    _print_table(names, rows, stdout)
    return EXIT_OK


def _write_csv(stdout: TextIO, names: list[str], rows: list[tuple[Any, ...]]) -> None:
    """RFC 4180 CSV with "\n" line ends; a row with a bare carriage return in a value has every field quoted.

    The csv module quotes a value with "\n" in it but not one with a lone "\r" (only the characters of the
    line terminator count), and readers, Python's own among them, take that "\r" for the end of a line.
    """
    plain = csv.writer(stdout, lineterminator="\n")
    quoted = csv.writer(stdout, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for row in (names, *rows):
        (quoted if any(isinstance(value, str) and "\r" in value for value in row) else plain).writerow(row)


def _print_table(names: list[str], rows: list[tuple[Any, ...]], stdout: TextIO) -> None:
    """The first rows as a table, every value cleaned of escape sequences (warehouse/report_text.py)."""
    from rich.markup import escape
    from rich.table import Table

    from warehouse.report_text import terminal_safe

    table = Table(*(escape(terminal_safe(name)) for name in names), highlight=False)
    for row in rows[:SQL_ROWS_SHOWN]:
        table.add_row(*(escape(terminal_safe("NULL" if value is None else str(value))) for value in row))
    console = terminal_console(stdout)
    console.print(table)
    shown = min(len(rows), SQL_ROWS_SHOWN)
    more = " (more not shown: use --csv for every row)" if len(rows) > SQL_ROWS_SHOWN else ""
    console.print(f"{shown} row{'' if shown == 1 else 's'}{more}")


def terminal_console(file: TextIO | None = None) -> Console:
    """A rich console on stdout (100 columns when piped) on which a closed pipe raises BrokenPipeError.

    rich's own handling exits with status 1; `piper-etl report | head` is not a failure, and `main`
    handles a reader that went away in one place for every command.
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # nothing more reaches the closed pipe
            raise BrokenPipeError("stdout was closed by its reader")

    out = file or sys.stdout
    return _Console(file=out, highlight=False, width=None if out.isatty() else 100)


def _list_views(opened: Analytics) -> None:
    from warehouse.analytics import VIEWS

    print(f"Reading {opened.source}.")
    print("Tables (current state): " + ", ".join(BASE_TABLES))
    print("Analytics views (columns in docs/analytics.md):")
    width = max(len(name) for name in VIEWS)
    for name, about in VIEWS.items():
        print(f"  {name:<{width}}  {about}")
    print('Example: piper-etl sql "SELECT scenario_name, run_pass_rate FROM scenario_summary ORDER BY 2"')
