"""Human-readable summaries of a load: a markdown artifact and the demo's closing summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from flows.pipeline import LoadSummary

if TYPE_CHECKING:
    from flows.sync import SyncSummary

OUTCOMES = ("loaded", "skipped", "not_found", "failed", "rejected")


def load_summary_markdown(summary: LoadSummary) -> str:
    """A markdown summary of one load, for the Prefect artifact."""
    lines = [
        f"# Piper load `{summary.load_id}`: {summary.status}",
        "",
        "| outcome | sessions |",
        "| --- | ---: |",
        *[f"| {outcome} | {summary.outcomes[outcome]} |" for outcome in OUTCOMES],
        "",
        "| table | rows written |",
        "| --- | ---: |",
        *[f"| {table} | {summary.rows[table]} |" for table in ("runs", "turns", "criteria_results")],
        "",
        f"Output folder: `{summary.out_dir}`",
    ]
    if summary.scenarios is not None and summary.scenarios.referenced:
        lines += ["", f"Scenario definitions: {summary.scenarios.line()}."]
    if summary.stop_message:
        lines += ["", f"**Stopped:** {summary.stop_message}"]
    for warning in summary.warnings:
        lines += ["", f"**Warning:** {warning}"]
    if summary.failures:
        lines += ["", "First failures:", ""]
        lines += [f"- `{session_id}`: {reason}" for session_id, reason in summary.failures]
    return "\n".join(lines) + "\n"


def sync_summary_markdown(summary: SyncSummary) -> str:
    """A markdown summary of one sync (its listing, queue and watermark), for the Prefect artifact."""
    state, plan = summary.state, summary.plan
    lines = [
        f"# Piper sync `{summary.load.load_id}`: {summary.status}",
        "",
        "| | |",
        "| --- | ---: |",
        f"| sessions listed | {state['sessions_listed']} |",
        f"| pages read | {state['pages_read']} |",
        f"| whole list read | {'yes' if state['full_scan'] else 'no (stopped below the watermark)'} |",
        f"| queued: new | {plan.reasons['new']} |",
        f"| queued: unfinished | {plan.reasons['unfinished']} |",
        f"| queued: updated | {plan.reasons['updated']} |",
        f"| sessions rows new or changed | {len(plan.rows)} |",
        f"| watermark before | {state['watermark_before'] or 'none'} |",
        f"| watermark after | {state['watermark_after'] or 'none'} |",
    ]
    lines += ["", *(f"**Warning:** {problem}" for problem in plan.problems)] if plan.problems else []
    return "\n".join(lines) + "\n"


def verdict_summary(database: Path) -> list[tuple[str, int, int, int]]:
    """(verdict, criteria results, judge input tokens, judge output tokens) from the current state."""
    con = duckdb.connect(str(database), read_only=True)
    try:
        rows = con.execute(
            "SELECT coalesce(verdict, '(none)'), count(*), coalesce(sum(input_tokens), 0), "
            "coalesce(sum(output_tokens), 0) FROM criteria_results GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    finally:
        con.close()
    return [(str(v), int(n), int(i), int(o)) for v, n, i, o in rows]


def run_status_summary(database: Path) -> list[tuple[str, int]]:
    con = duckdb.connect(str(database), read_only=True)
    try:
        rows = con.execute(
            "SELECT coalesce(status, '(none)'), count(*) FROM runs GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    finally:
        con.close()
    return [(str(s), int(n)) for s, n in rows]
