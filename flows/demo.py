"""`piper-etl demo`: real loads and syncs, over HTTP, from the simulated Piper API on loopback."""

from __future__ import annotations

import json
import secrets
import shlex
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connector.fake_api import FakeDataset, FakePiper, serve
from flows.analytics_cli import write_report
from flows.pipeline import LoadSummary, run_load
from flows.report import run_status_summary, verdict_summary
from flows.settings import LoadSettings, SyncOptions
from flows.sync import SyncSummary, run_sync
from warehouse.snapshot import SNAPSHOT_FILE
from warehouse.store import DATABASE_FILE

UNKNOWN_SESSIONS = ("web-no-such-session", "sms:+15550000000:unknown")
NEW_SESSIONS = ("web-demo-new-1", "web-demo-new-2", "web-demo-new-3")
RUNLESS_SHARE = 10  # one listed session in ten has no scenario run
EXAMPLE_SQL = ("SELECT scenario_name, runs, round(run_pass_rate, 2) AS pass_rate "
               "FROM scenario_summary ORDER BY runs DESC")


def run_demo(*, sessions: int = 200, out_dir: Path = Path("piper-demo"), seed: int = 7) -> int:
    """Load a simulated org twice (the second time after its pending runs finished), sync it twice, show the result."""
    console = Console(highlight=False, soft_wrap=True)
    started = time.monotonic()
    dataset = FakeDataset.generate(seed=seed, sessions=sessions, runless_sessions=sessions // RUNLESS_SHARE)
    token = f"pat_demo_{secrets.token_hex(12)}"  # a throwaway token shared with the simulated API only
    # A little latency and a few 429s and 503s so the load shows its retries at work.
    state = FakePiper(dataset=dataset, token=token, latency_ms=20, rate_limit_rate=0.02, error_rate=0.02,
                      retry_after="1", fault_seed=seed)
    session_ids = [*dataset.session_ids, *UNKNOWN_SESSIONS]
    with serve(state) as base_url:
        settings = LoadSettings(org_id=dataset.org_id, base_url=base_url, out_dir=out_dir, concurrency=16)
        console.print(f"[bold]piper-etl demo[/]: simulated Piper API at {base_url}, {len(session_ids)} sessions "
                      f"({len(UNKNOWN_SESSIONS)} unknown to it)")
        first = run_load(session_ids, settings, token)
        _print_load(console, "first load", first)
        dataset.complete_pending()
        second = run_load(session_ids, settings, token)
        _print_load(console, "second load, after the pending runs finished", second)
        for session_id in NEW_SESSIONS:  # the org moves on: new sessions, two runs re-run
            dataset.add_session(session_id)
        for session_id in dataset.session_ids[:2]:
            dataset.rerun(session_id)
        synced = run_sync(settings, SyncOptions(), token)
        _print_sync(console, f"sync, after {len(NEW_SESSIONS)} new sessions and 2 re-runs", synced)
        quiet = run_sync(settings, SyncOptions(), token)
        _print_sync(console, "sync again, nothing new", quiet)
    _print_tables(console, out_dir / DATABASE_FILE)
    console.print(f"\n[bold]Written[/] under {out_dir}/:")
    console.print(f"  {out_dir / DATABASE_FILE}   DuckDB: the tables and the analytics views (the loads' own file)")
    console.print(f"  {out_dir / SNAPSHOT_FILE}   its read-only snapshot, for queries and BI tools (docs/bi.md)")
    console.print(f"  {out_dir / 'parquet'}/<table>/*.parquet   landing files of every committed load")
    console.print(f"  {out_dir / 'current_state.sql'}   views giving the current state over the Parquet files")
    console.print("\n[bold]Try[/]:")
    console.print("  " + example_query(out_dir), markup=False)
    report = write_report(out_dir, out_dir / "report.html")
    console.print(f"\n[bold]Report[/]: {report}   charts of pass rates, failing criteria, judge cost and loads; "
                  "open it in a browser (it works offline)")
    console.print(f"  piper-etl report --out {out_dir}   the same in this terminal (and the HTML again)")
    console.print(f"  piper-etl sql --out {out_dir} \"SELECT * FROM scenario_summary\"   the analytics views in SQL")
    console.print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
    statuses = (first.status, second.status, synced.load.status, quiet.load.status)
    return 0 if "aborted" not in statuses else 1


def example_query(out_dir: Path) -> str:
    """A shell command that prints the pass rate by scenario from the snapshot (quoted for a POSIX shell).

    The Python strings are double-quoted (JSON's escapes are Python's), so that the usual command has
    no quote to escape inside the shell's single quotes.
    """
    database = json.dumps(str(out_dir / SNAPSHOT_FILE), ensure_ascii=False)
    code = f"import duckdb; print(duckdb.connect({database}, read_only=True).sql({json.dumps(EXAMPLE_SQL)}))"
    return f"python3 -c {shlex.quote(code)}"


def _print_load(console: Console, title: str, summary: LoadSummary) -> None:
    o = summary.outcomes
    console.print(
        f"  {title}: {o['loaded']} loaded, {o['skipped']} skipped (already final), {o['not_found']} not found, "
        f"{o['failed']} failed, {o['rejected']} rejected; {summary.rows['criteria_results']} criteria results written"
    )


def _print_sync(console: Console, title: str, summary: SyncSummary) -> None:
    plan, state, o = summary.plan, summary.state, summary.load.outcomes
    how = "the whole list" if state["full_scan"] else "stopped below the watermark"
    console.print(
        f"  {title}: listed {plan.listed} sessions in {state['pages_read']} pages ({how}); queued "
        f"{len(plan.queued)} ({plan.reasons['new']} new, {plan.reasons['unfinished']} unfinished, "
        f"{plan.reasons['updated']} updated): {o['loaded']} loaded, {o['failed']} failed"
    )


def _print_tables(console: Console, database: Path) -> None:
    runs = Table(title="Runs by status")
    runs.add_column("status")
    runs.add_column("runs", justify="right")
    for status, count in run_status_summary(database):
        runs.add_row(status, str(count))
    verdicts = Table(title="Judged criteria by verdict")
    for column in ("verdict", "criteria", "judge input tokens", "judge output tokens"):
        verdicts.add_column(column, justify="left" if column == "verdict" else "right")
    for verdict, count, input_tokens, output_tokens in verdict_summary(database):
        verdicts.add_row(verdict, f"{count:,}", f"{input_tokens:,}", f"{output_tokens:,}")
    console.print()
    console.print(runs)
    console.print(verdicts)
