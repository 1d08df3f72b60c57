"""The report's charts, drawn with plotly: one figure per question a reader asks."""

from __future__ import annotations

import html
import itertools
from collections import defaultdict
from datetime import date, timedelta

import plotly.colors
import plotly.graph_objects as go

from warehouse.report_data import ReportData, Row, excerpt, pct, scenario_label, short_label, usd

CHARTS = {
    "pass-rate-over-time": "Run pass rate by week, per scenario",
    "failing-criteria": "Criteria that fail most",
    "cost-by-scenario": "Judge cost by scenario",
    "cost-by-day": "Judge cost by day",
    "load-history": "Load history",
}
"""Chart id (the HTML element id) -> title. Every report has all of them, empty ones say why."""

OUTCOMES = ("loaded", "skipped", "not_found", "failed", "rejected")
OUTCOME_COLOURS = ("#2a9d8f", "#8ab17d", "#e9c46a", "#e76f51", "#9b2226")
SCENARIO_COLOURS: tuple[str, ...] = tuple(plotly.colors.qualitative.Dark24[:20])
"""One colour per scenario series: 20 qualitative colours, far apart from each other and from the white page."""
OTHERS_COLOUR = "#b0b0b0"
"""The series that sums the scenarios beyond the 20 that have a colour of their own."""
PASS_RATE_SCALE = "RdYlBu"
"""Red (0 %) through yellow to blue (100 %): a diverging scale that colour-blind readers can tell apart."""
LEGEND_LABEL, TICK_LABEL = 32, 40
"""Characters of a name shown in a legend entry or an axis tick label; hover shows the whole name."""
HEATMAP_TEXT_WEEKS = 26
"""Up to this many weeks, each heatmap cell also prints its rate; beyond, the cells are too narrow."""


def build_figures(data: ReportData) -> dict[str, go.Figure]:
    """Every chart of the report, keyed by chart id."""
    return {
        "pass-rate-over-time": pass_rate_by_week(data),
        "failing-criteria": failing_criteria(data),
        "cost-by-scenario": cost_by_scenario(data),
        "cost-by-day": cost_by_day(data),
        "load-history": load_history(data),
    }


def _layout(figure: go.Figure, title: str, *, empty: str | None = None, **axes: object) -> go.Figure:
    # The legend keeps plotly's place, right of the plot: plotly widens the margin for it, so it never
    # covers an axis, its tick labels or its title (a legend under the plot did).
    layout: dict[str, object] = {
        "title": title, "template": "plotly_white", "height": 440, "margin": {"l": 60, "r": 20, "t": 60, "b": 60},
        "hoverlabel": {"align": "left"},
    }
    figure.update_layout(**(layout | axes))
    if empty:
        figure.add_annotation(text=empty, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return figure


def count_axis(largest: float | None, **axis: object) -> dict[str, object]:
    """An axis of counts: integer ticks only (0, 1, 2 ... or a step of 2, 5, 10, 20 ...), starting at 0."""
    step = next(m * 10**e for e in itertools.count() for m in (1, 2, 5) if (largest or 0) <= 8 * m * 10**e)
    return {"tickformat": ",d", "tick0": 0, "dtick": step, "rangemode": "tozero", **axis}


def pass_rate_by_week(data: ReportData) -> go.Figure:
    """Scenario x ISO week heatmap of the run pass rate; a week without final runs is an empty cell, not 0 %."""
    cells: dict[str, dict[date, Row]] = defaultdict(dict)
    for label, row in zip(series_labels(data.trend), data.trend, strict=True):
        cells[label][row["week"]] = row
    weeks = _weeks(min(row["week"] for row in data.trend), max(row["week"] for row in data.trend)) if cells else []
    names = sorted(cells)
    z, hover = [], []
    for name in names:
        rates = [(cells[name].get(week) or {}).get("run_pass_rate") for week in weeks]
        z.append([None if rate is None else rate * 100 for rate in rates])
        hover.append([_week_hover(name, week, cells[name].get(week)) for week in weeks])
    figure = go.Figure()
    if names:
        figure.add_trace(go.Heatmap(
            x=[f"{week:%G-W%V}" for week in weeks], y=[html.escape(name) for name in names],
            z=z, zmin=0, zmax=100, colorscale=PASS_RATE_SCALE, hoverongaps=False, xgap=2, ygap=2,
            customdata=hover, hovertemplate="%{customdata}<extra></extra>", name="run pass rate",
            texttemplate="%{z:.0f}" if len(weeks) <= HEATMAP_TEXT_WEEKS else None,
            colorbar={"title": {"text": "runs passed (%)"}, "ticksuffix": " %"},
        ))
    empty = None if names else "No run has a start time yet."
    return _layout(figure, CHARTS["pass-rate-over-time"] + " (final runs, ISO weeks in UTC; empty: no final run)",
                   empty=empty, height=max(300, 140 + 28 * len(names)),
                   xaxis={"title": "ISO week (UTC, from Monday)", "type": "category", "automargin": True},
                   yaxis={"autorange": "reversed", "automargin": True, "type": "category", **_short_ticks(names)})


def _short_ticks(labels: list[str]) -> dict[str, object]:
    """Category tick labels cut short, while the categories keep the whole (distinct) label."""
    return {"tickmode": "array", "tickvals": [html.escape(label) for label in labels],
            "ticktext": [html.escape(short_label(label, TICK_LABEL)) for label in labels]}


def _weeks(first: date, last: date) -> list[date]:
    """Every Monday from `first` to `last`, so a week without runs is a column of its own."""
    return [first + timedelta(weeks=n) for n in range((last - first).days // 7 + 1)]


def _week_hover(name: str, week: date, row: Row | None) -> str:
    head = f"<b>{html.escape(name)}</b><br>week {week:%G-W%V} (from {week:%Y-%m-%d})<br>"
    if row is None:
        return head + "no runs"
    final = row["runs_final"]
    if not final:
        return head + f"{row['runs']} runs, none final yet"
    return head + f"run pass rate {pct(row['run_pass_rate'])}: {row['runs_passed']} of {final} final runs passed " \
                  f"({row['runs']} runs in all)"


def series_labels(rows: list[Row]) -> list[str]:
    """Each row's scenario label, with the scenario id where two scenarios share a name (one series each)."""
    labels = [scenario_label(row) for row in rows]
    ids: dict[str, set[object]] = defaultdict(set)
    for label, row in zip(labels, rows, strict=True):
        ids[label].add(row["scenario_id"])
    return [f"{label} [{row['scenario_id']}]" if len(ids[label]) > 1 else label
            for label, row in zip(labels, rows, strict=True)]


def failing_criteria(data: ReportData) -> go.Figure:
    labels, hover = [], []
    for rank, row in enumerate(data.criteria, start=1):
        question = row["criteria_question"] or row["criteria_id"] or "(no question)"
        labels.append(html.escape(f"{rank}. {excerpt(question, 60)} ({excerpt(scenario_label(row), 24)})"))
        critique = excerpt(row["latest_failing_critique"], 220)
        hover.append(
            "<b>" + "<br>".join(html.escape(line) for line in wrap(question, 80)) + "</b><br>"
            f"{html.escape(scenario_label(row))}<br>{row['fails']} fails, pass rate {pct(row['pass_rate'])}<br>"
            "latest failing critique:<br>" + "<br>".join(html.escape(line) for line in wrap(critique, 80))
        )
    figure = go.Figure(
        go.Bar(x=[row["fails"] for row in data.criteria], y=labels, orientation="h", hovertext=hover,
               hoverinfo="text", marker_color="#e76f51", name="fails")
    )
    empty = None if data.criteria else "No criterion has failed in a final run."
    largest = max((row["fails"] for row in data.criteria), default=0)
    return _layout(figure, CHARTS["failing-criteria"] + " (FAIL verdicts in final runs)", empty=empty,
                   height=max(440, 40 + 32 * len(labels)), xaxis=count_axis(largest, title="fails"),
                   yaxis={"autorange": "reversed", "automargin": True})


def cost_by_scenario(data: ReportData) -> go.Figure:
    labels = series_labels(data.scenarios)
    names = [html.escape(label) for label in labels]
    figure = go.Figure()
    if data.price.is_set:
        costs = [row["estimated_cost_usd"] for row in data.scenarios]
        figure.add_trace(go.Bar(x=names, y=costs, name="estimated cost (USD)", marker_color="#264653",
                                customdata=names, hovertemplate="%{customdata}: $%{y:.4f}<extra></extra>"))
        title, axis = CHARTS["cost-by-scenario"] + " (estimated USD)", "USD"
    else:
        for kind, colour in (("input", "#264653"), ("output", "#2a9d8f")):
            figure.add_trace(go.Bar(x=names, y=[row[f"{kind}_tokens"] for row in data.scenarios],
                                    name=f"{kind} tokens", marker_color=colour, customdata=names,
                                    hovertemplate=f"%{{customdata}}: %{{y:,}} {kind} tokens<extra></extra>"))
        title, axis = "Judge tokens by scenario (no price set, so no cost)", "tokens"
    empty = None if data.scenarios else "No runs."
    return _layout(figure, title, empty=empty, barmode="stack", yaxis={"title": axis, "rangemode": "tozero"},
                   xaxis={"automargin": True, "tickangle": -30, "type": "category", **_short_ticks(labels)})


def cost_by_day(data: ReportData) -> go.Figure:
    """Cost (or tokens) by day, stacked by scenario: the 19 dearest beyond 20 scenarios, the rest as one series."""
    by_scenario: dict[str, list[Row]] = defaultdict(list)
    for label, row in zip(series_labels(data.daily), data.daily, strict=True):
        by_scenario[label].append(row)

    def value(row: Row) -> float | None:
        if data.price.is_set:
            return row["estimated_cost_usd"]  # type: ignore[no-any-return]
        if row["input_tokens"] is None and row["output_tokens"] is None:
            return None
        return (row["input_tokens"] or 0) + (row["output_tokens"] or 0)

    names = sorted(by_scenario)
    if len(names) > len(SCENARIO_COLOURS):
        dearest = sorted(names, key=lambda name: -sum(value(row) or 0 for row in by_scenario[name]))
        kept = sorted(dearest[: len(SCENARIO_COLOURS) - 1])
        others = [row for name in dearest[len(SCENARIO_COLOURS) - 1:] for row in by_scenario[name]]
        series = [(name, by_scenario[name], colour) for name, colour in zip(kept, SCENARIO_COLOURS, strict=False)]
        series.append((f"{len(names) - len(kept)} other scenarios", others, OTHERS_COLOUR))
    else:
        series = [(name, by_scenario[name], colour) for name, colour in zip(names, SCENARIO_COLOURS, strict=False)]
    figure = go.Figure()
    unit = "$%{y:.4f}" if data.price.is_set else "%{y:,} tokens"
    for name, days, colour in series:
        totals: dict[date, float | None] = {}
        for row in days:
            amount = value(row)
            if amount is not None:
                totals[row["day"]] = (totals.get(row["day"]) or 0) + amount
            else:
                totals.setdefault(row["day"], None)
        figure.add_trace(go.Bar(
            x=list(totals), y=list(totals.values()), name=html.escape(short_label(name, LEGEND_LABEL)),
            marker_color=colour, hovertemplate=f"<b>{html.escape(name)}</b><br>%{{x|%Y-%m-%d}}: {unit}<extra></extra>",
        ))
    if data.price.is_set:
        title, axis = CHARTS["cost-by-day"] + " (estimated USD, stacked by scenario)", "USD"
    else:
        title, axis = "Judge tokens by day, stacked by scenario (no price set, so no cost)", "tokens"
    empty = None if data.daily else "No run has a start time yet."
    return _layout(figure, title, empty=empty, barmode="stack", yaxis={"title": axis, "rangemode": "tozero"},
                   xaxis={"title": "day (UTC)"})


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
    largest = max((sum(row[f"sessions_{outcome}"] or 0 for outcome in OUTCOMES) for row in data.loads), default=0)
    return _layout(figure, CHARTS["load-history"] + " (sessions per load, by outcome)", empty=empty, barmode="stack",
                   yaxis=count_axis(largest, title="sessions"),
                   xaxis={"title": "load start (UTC)", "type": "category", "automargin": True})


def wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` characters, broken at spaces (a longer word keeps a line of its own)."""
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
