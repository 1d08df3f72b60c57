"""The report as one self-contained HTML file: plotly's JavaScript is embedded, so it opens offline."""

from __future__ import annotations

import html
from pathlib import Path

from warehouse import files
from warehouse.report_changes import Changes
from warehouse.report_charts import CHARTS, build_figures, cost_note
from warehouse.report_data import ReportData, Row, excerpt, pct, scenario_label, seconds, tokens, usd

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1d3557; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: .3rem; }
.meta { color: #555; margin: .2rem 0; } .price { padding: .6rem .8rem; border-radius: 6px; background: #eef6f3; }
.price.unset { background: #fff4d6; }
code { overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; margin-top: .8rem; }
th, td { padding: .3rem .4rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { vertical-align: bottom; } td { overflow-wrap: anywhere; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; } td.n, td.t { white-space: nowrap; }
.verdict { padding: .6rem .8rem; border-radius: 6px; font-weight: 600; }
.verdict.bad { background: #fde2dd; color: #9b2226; } .verdict.ok { background: #e3f2ec; color: #1b5e45; }
"""


def render_html(data: ReportData) -> str:
    """The whole report page; the first chart carries plotly.js inline, the others reuse it."""
    figures = build_figures(data)
    charts = {
        chart_id: figure.to_html(
            full_html=False, include_plotlyjs=index == 0, div_id=chart_id, config=PLOTLY_CONFIG
        )
        for index, (chart_id, figure) in enumerate(figures.items())
    }
    t = data.totals
    price_class = "price" if data.price.is_set else "price unset"
    body = [
        "<h1>Piper report</h1>",
        f'<p class="meta">Source: <code>{_e(data.source)}</code> · {_e(data.filters)} · generated '
        f"{data.generated_at:%Y-%m-%d %H:%M:%S} UTC</p>",
        f'<p class="meta">{t["runs"]} runs, {t["runs_final"]} final · run pass rate {pct(t["run_pass_rate"])} · '
        f"criteria pass rate {pct(t['criteria_pass_rate'])} · judge tokens {tokens(t['input_tokens'])} in, "
        f"{tokens(t['output_tokens'])} out · estimated cost {usd(t['estimated_cost_usd'])}</p>",
        f'<p class="{price_class}">{_e(data.price.line())}</p>',
        *_changes(data.changes),
        f"<h2>{CHARTS['pass-rate-over-time']}</h2>",
        charts["pass-rate-over-time"],
        f"<h2>{CHARTS['failing-criteria']}</h2>",
        charts["failing-criteria"],
        _criteria_table(data.criteria),
        f"<h2>{CHARTS['cost-by-scenario']}</h2>",
        f'<p class="meta">{_e(cost_note(data))}</p>',
        charts["cost-by-scenario"],
        f"<h2>{CHARTS['cost-by-day']}</h2>",
        charts["cost-by-day"],
        f"<h2>{CHARTS['load-history']}</h2>",
        charts["load-history"],
        "<h2>Scenarios</h2>",
        '<p class="meta">Pass rates count final runs (passed, failed, error) and PASS/FAIL verdicts only; '
        "other verdicts are counted apart.</p>",
        _scenario_table(data.scenarios),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Piper report · {_e(data.filters)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_html(data: ReportData, path: Path) -> Path:
    """Write the report atomically (warehouse/files.py) and return its path."""
    return files.write_text_atomically(path, render_html(data))


def _e(value: object) -> str:
    return html.escape(str(value))


def _table(headers: list[str], numeric: set[str], rows: list[list[str]], times: frozenset[str] = frozenset()) -> str:
    """A table that fits the page: text wraps (anywhere, if it must); numbers and `times` columns stay on one line."""
    head = "".join(f'<th class="n">{_e(h)}</th>' if h in numeric else f"<th>{_e(h)}</th>" for h in headers)
    lines = [f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>"]
    for row in rows:
        cells = "".join(
            f'<td class="n">{_e(v)}</td>' if h in numeric else f'<td class="t">{_e(v)}</td>' if h in times
            else f"<td>{_e(v)}</td>"
            for h, v in zip(headers, row, strict=True)
        )
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</tbody>\n</table>")
    return "\n".join(lines)


def _changes(changes: Changes | None) -> list[str]:
    """The opening section: regressions, criteria failing for the first time, newly flaky criteria."""
    if changes is None:
        return []
    result = changes.check
    verdict = "verdict bad" if result.regressed else "verdict ok"
    parts = [f'<h2 id="what-changed">What changed in {_e(changes.window_text)}</h2>',
             f'<p class="{verdict}">{_e(changes.regression_line())}</p>']
    if result.regressed:
        headers = ["scenario", "baseline runs", "baseline pass rate", "window runs", "window pass rate",
                   "drop (points)"]
        parts.append(_table(headers, set(headers) - {"scenario"}, [
            [s.scenario_name, str(s.baseline_runs), pct(s.baseline_pass_rate), str(s.window_runs),
             pct(s.window_pass_rate), "–" if s.drop_points is None else f"{s.drop_points:.1f}"]
            for s in result.regressions
        ]))
    parts.append(f'<p class="meta">{_e(changes.new_failures_line())}</p>')
    if result.new_failures:
        headers = ["criterion", "scenario", "fails in window", "in baseline", "last failed (UTC)"]
        parts.append(_table(headers, {"fails in window"}, [
            [f.criteria_question or f.criteria_id, f.scenario_name, f"{f.window_fails} of {f.window_evaluations}",
             f"passed all {f.baseline_evaluations}" if f.baseline_evaluations else "not evaluated",
             f"{f.last_failed_at:%Y-%m-%d %H:%M}"]
            for f in result.new_failures
        ], frozenset({"last failed (UTC)"})))
    parts.append(f'<p class="meta">{_e(changes.flaky_line())}</p>')
    if changes.newly_flaky:
        headers = ["criterion", "scenario", "flips (last 10)", "pass rate (last 10)", "last verdict",
                   "last flip (UTC)"]
        parts.append(_table(headers, {"flips (last 10)", "pass rate (last 10)"}, [
            [row["criteria_question"] or row["criteria_id"] or "", scenario_label(row), str(row["recent_flips"]),
             pct(row["recent_pass_rate"]), str(row["last_verdict"]), f"{row['last_flip_at']:%Y-%m-%d %H:%M}"]
            for row in changes.newly_flaky
        ], frozenset({"last flip (UTC)"})))
    return parts


def _criteria_table(criteria: list[Row]) -> str:
    headers = ["fails", "pass rate", "criterion", "scenario", "last failed (UTC)", "latest failing critique"]
    rows = [
        [
            str(row["fails"]),
            pct(row["pass_rate"]),
            row["criteria_question"] or row["criteria_id"] or "",
            scenario_label(row),
            f"{row['last_failed_at']:%Y-%m-%d %H:%M}" if row["last_failed_at"] else "–",
            excerpt(row["latest_failing_critique"], 300),
        ]
        for row in criteria
    ]
    return _table(headers, {"fails", "pass rate"}, rows, frozenset({"last failed (UTC)"}))


def _scenario_table(scenarios: list[Row]) -> str:
    headers = ["scenario", "runs", "passed", "failed", "error", "not final", "run pass rate", "criteria pass rate",
               "other verdicts", "mean s", "p95 s", "input tokens", "output tokens", "estimated cost"]
    rows = [
        [
            scenario_label(row),
            str(row["runs"]),
            str(row["runs_passed"]),
            str(row["runs_failed"]),
            str(row["runs_error"]),
            str(row["runs_not_final"]),
            pct(row["run_pass_rate"]),
            pct(row["criteria_pass_rate"]),
            str(row["criteria_other_verdicts"]),
            seconds(row["mean_duration_seconds"]),
            seconds(row["p95_duration_seconds"]),
            tokens(row["input_tokens"]),
            tokens(row["output_tokens"]),
            usd(row["estimated_cost_usd"]),
        ]
        for row in scenarios
    ]
    return _table(headers, set(headers) - {"scenario"}, rows)
