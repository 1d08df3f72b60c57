"""The report's charts, drawn with plotly: one figure per question a reader asks."""

from __future__ import annotations

import html
from collections import defaultdict

import plotly.graph_objects as go

from warehouse.report_data import ReportData, Row, excerpt, pct, scenario_label, usd

CHARTS = {
    "pass-rate-over-time": "Run pass rate over time, per scenario",
    "failing-criteria": "Criteria that fail most",
    "cost-by-scenario": "Judge cost by scenario",
    "cost-by-day": "Judge cost by day",
    "load-history": "Load history",
}
"""Chart id (the HTML element id) -> title. Every report has all of them, empty ones say why."""

OUTCOMES = ("loaded", "skipped", "not_found", "failed", "rejected")
OUTCOME_COLOURS = ("#2a9d8f", "#8ab17d", "#e9c46a", "#e76f51", "#9b2226")


def build_figures(data: ReportData) -> dict[str, go.Figure]:
    """Every chart of the report, keyed by chart id."""
    return {
        "pass-rate-over-time": pass_rate_over_time(data),
        "failing-criteria": failing_criteria(data),
        "cost-by-scenario": cost_by_scenario(data),
        "cost-by-day": cost_by_day(data),
        "load-history": load_history(data),
    }


def _layout(figure: go.Figure, title: str, *, empty: str | None = None, **axes: object) -> go.Figure:
    layout: dict[str, object] = {
        "title": title, "template": "plotly_white", "height": 440, "margin": {"l": 60, "r": 20, "t": 60, "b": 60},
        "legend": {"orientation": "h", "y": -0.25}, "hoverlabel": {"align": "left"},
    }
    figure.update_layout(**(layout | axes))
    if empty:
        figure.add_annotation(text=empty, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return figure


def pass_rate_over_time(data: ReportData) -> go.Figure:
    by_scenario: dict[str, list[Row]] = defaultdict(list)
    for row in data.daily:
        by_scenario[scenario_label(row)].append(row)
    figure = go.Figure()
    for name, days in sorted(by_scenario.items()):
        figure.add_trace(
            go.Scatter(
                x=[row["day"] for row in days],
                y=[None if row["run_pass_rate"] is None else row["run_pass_rate"] * 100 for row in days],
                customdata=[[row["runs"] - row["runs_not_final"], row["runs_passed"]] for row in days],
                name=html.escape(name),
                mode="lines+markers",
                hovertemplate=f"<b>{html.escape(name)}</b><br>%{{x|%Y-%m-%d}}: %{{y:.1f}}% "
                "(%{customdata[1]} of %{customdata[0]} final runs passed)<extra></extra>",
            )
        )
    empty = None if data.daily else "No run has a start time yet."
    return _layout(figure, CHARTS["pass-rate-over-time"] + " (final runs, UTC days)", empty=empty,
                   yaxis={"title": "runs passed (%)", "range": [-5, 105]}, xaxis={"title": "day (UTC)"})


def failing_criteria(data: ReportData) -> go.Figure:
    labels, hover = [], []
    for rank, row in enumerate(data.criteria, start=1):
        question = row["criteria_question"] or row["criteria_id"] or "(no question)"
        labels.append(html.escape(f"{rank}. {excerpt(question, 60)} ({excerpt(scenario_label(row), 24)})"))
        critique = excerpt(row["latest_failing_critique"], 220)
        hover.append(
            f"<b>{html.escape(question)}</b><br>{html.escape(scenario_label(row))}<br>"
            f"{row['fails']} fails, pass rate {pct(row['pass_rate'])}<br>latest failing critique:<br>"
            + "<br>".join(html.escape(line) for line in _wrap(critique, 80))
        )
    figure = go.Figure(
        go.Bar(x=[row["fails"] for row in data.criteria], y=labels, orientation="h", hovertext=hover,
               hoverinfo="text", marker_color="#e76f51", name="fails")
    )
    empty = None if data.criteria else "No criterion has failed in a final run."
    return _layout(figure, CHARTS["failing-criteria"] + " (FAIL verdicts in final runs)", empty=empty,
                   height=max(440, 40 + 32 * len(labels)), xaxis={"title": "fails"},
                   yaxis={"autorange": "reversed", "automargin": True})


def cost_by_scenario(data: ReportData) -> go.Figure:
    names = [html.escape(scenario_label(row)) for row in data.scenarios]
    figure = go.Figure()
    if data.price.is_set:
        costs = [row["estimated_cost_usd"] for row in data.scenarios]
        figure.add_trace(go.Bar(x=names, y=costs, name="estimated cost (USD)", marker_color="#264653",
                                hovertemplate="%{x}: $%{y:.4f}<extra></extra>"))
        title, axis = CHARTS["cost-by-scenario"] + " (estimated USD)", "USD"
    else:
        for kind, colour in (("input", "#264653"), ("output", "#2a9d8f")):
            figure.add_trace(go.Bar(x=names, y=[row[f"{kind}_tokens"] for row in data.scenarios],
                                    name=f"{kind} tokens", marker_color=colour))
        title, axis = "Judge tokens by scenario (no price set, so no cost)", "tokens"
    empty = None if data.scenarios else "No runs."
    return _layout(figure, title, empty=empty, barmode="stack", yaxis={"title": axis},
                   xaxis={"automargin": True, "tickangle": -30})


def cost_by_day(data: ReportData) -> go.Figure:
    by_scenario: dict[str, list[Row]] = defaultdict(list)
    for row in data.daily:
        by_scenario[scenario_label(row)].append(row)
    figure = go.Figure()
    for name, days in sorted(by_scenario.items()):
        if data.price.is_set:
            values = [row["estimated_cost_usd"] for row in days]
        else:
            values = [None if row["input_tokens"] is None and row["output_tokens"] is None
                      else (row["input_tokens"] or 0) + (row["output_tokens"] or 0) for row in days]
        figure.add_trace(go.Bar(x=[row["day"] for row in days], y=values, name=html.escape(name)))
    if data.price.is_set:
        title, axis = CHARTS["cost-by-day"] + " (estimated USD, stacked by scenario)", "USD"
    else:
        title, axis = "Judge tokens by day, stacked by scenario (no price set, so no cost)", "tokens"
    empty = None if data.daily else "No run has a start time yet."
    return _layout(figure, title, empty=empty, barmode="stack", yaxis={"title": axis}, xaxis={"title": "day (UTC)"},
                   showlegend=len(by_scenario) <= 20)


def load_history(data: ReportData) -> go.Figure:
    labels = [
        f"{row['started_at']:%Y-%m-%d %H:%M:%S}" if row["started_at"] else str(row["load_id"]) for row in data.loads
    ]
    figure = go.Figure()
    for outcome, colour in zip(OUTCOMES, OUTCOME_COLOURS, strict=True):
        figure.add_trace(
            go.Bar(
                x=labels,
                y=[row[f"sessions_{outcome}"] for row in data.loads],
                name=outcome.replace("_", " "),
                marker_color=colour,
                customdata=[[html.escape(str(row["load_id"])), html.escape(str(row["status"]))] for row in data.loads],
                hovertemplate="load %{customdata[0]} (%{customdata[1]})<br>%{y} sessions "
                + outcome.replace("_", " ") + "<extra></extra>",
            )
        )
    empty = None if data.loads else "No load has finished yet."
    return _layout(figure, CHARTS["load-history"] + " (sessions per load, by outcome)", empty=empty, barmode="stack",
                   yaxis={"title": "sessions"}, xaxis={"title": "load start (UTC)", "type": "category"})


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def cost_note(data: ReportData) -> str:
    """One line under the cost charts: the total, or why there is none."""
    total = data.totals["estimated_cost_usd"]
    return f"Estimated judge cost of these runs: {usd(total)}." if data.price.is_set else data.price.line()
