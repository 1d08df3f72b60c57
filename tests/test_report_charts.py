"""The report's charts at a glance: a week heatmap, 20 distinct scenario colours, integer count ticks, full text."""

from __future__ import annotations

import dataclasses
import itertools
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.history_builder import HistoryRun, history_connection
from warehouse import ddl
from warehouse.reader import Analytics
from warehouse.report_charts import (
    OTHERS_COLOUR,
    SCENARIO_COLOURS,
    cost_by_day,
    count_axis,
    failing_criteria,
    pass_rate_by_week,
)
from warehouse.report_data import ReportData, collect


def history_report(runs: list[HistoryRun], as_of: datetime | None = None) -> ReportData:
    """The report of a hand-built history (tests/history_builder.py), what changed judged as of `as_of`."""
    con = history_connection(runs)
    con.execute(f"CREATE TABLE loads AS {ddl.empty_select_sql('loads')}")
    return collect(Analytics(con, Path("history"), prices_from_setting=False), as_of=as_of)


def lab(colour: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB colour like '#2e91e5'."""
    srgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in srgb)
    xyz = ((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b,
           (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883)
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_twenty_scenario_colours_are_far_apart_and_stand_out_on_white() -> None:
    assert len(SCENARIO_COLOURS) == 20 and len({c.lower() for c in SCENARIO_COLOURS}) == 20
    # CIE76 distance: about 2.3 is just noticeable; 25 and more reads as a different colour at a glance.
    closest = min(math.dist(lab(a), lab(b)) for a, b in itertools.combinations(SCENARIO_COLOURS, 2))
    assert closest >= 25, closest
    assert min(math.dist(lab(c), lab("#ffffff")) for c in SCENARIO_COLOURS) >= 40
    assert min(math.dist(lab(c), lab(OTHERS_COLOUR)) for c in SCENARIO_COLOURS) >= 15


def daily_rows(scenarios: int) -> list[dict[str, Any]]:
    return [{"day": date(2026, 11, 2), "scenario_id": f"sc-{n}", "scenario_name": f"Scenario {n:02d}", "is_test": False,
             "input_tokens": 1000 * (n + 1), "output_tokens": 10, "estimated_cost_usd": None}
            for n in range(scenarios)]


def test_up_to_twenty_scenarios_each_get_their_own_colour(tmp_path: Path) -> None:
    data = dataclasses.replace(history_report([]), daily=daily_rows(20))
    traces = cost_by_day(data).data
    assert [trace.name for trace in traces] == [f"Scenario {n:02d}" for n in range(20)]
    assert [trace.marker.color for trace in traces] == list(SCENARIO_COLOURS)


def test_beyond_twenty_the_cheapest_share_one_series() -> None:
    data = dataclasses.replace(history_report([]), daily=daily_rows(25))
    traces = cost_by_day(data).data
    assert len(traces) == 20 and len({trace.marker.color for trace in traces}) == 20
    kept = [trace.name for trace in traces[:19]]
    assert kept == [f"Scenario {n:02d}" for n in range(6, 25)]  # the 19 with the most tokens
    assert (traces[19].name, traces[19].marker.color) == ("6 other scenarios", OTHERS_COLOUR)
    assert traces[19].y == (sum(1000 * (n + 1) + 10 for n in range(6)),)  # nothing is dropped from the stack


@pytest.mark.parametrize(("largest", "step"), [
    (None, 1), (0, 1), (3, 1), (8, 1), (9, 2), (16, 2), (17, 5), (40, 5), (41, 10), (80, 10), (81, 20),
    (170, 50), (4000, 500),
])
def test_count_axes_tick_whole_numbers(largest: int | None, step: int) -> None:
    axis = count_axis(largest, title="fails")
    assert axis == {"tickformat": ",d", "tick0": 0, "dtick": step, "rangemode": "tozero", "title": "fails"}


def test_the_week_heatmap_leaves_weeks_without_final_runs_empty() -> None:
    data = history_report([
        HistoryRun("Refund", "2026-11-02T10:00", {"c1": "PASS"}),   # W45: 1 of 2 passed
        HistoryRun("Refund", "2026-11-08T23:00", {"c1": "FAIL"}),   # Sunday: still W45
        HistoryRun("Refund", "2026-11-09T10:00", {"c1": "FAIL"}),   # W46: 0 %, not empty
        HistoryRun("Refund", "2026-11-23T10:00", {"c1": "PASS"}, status="running"),  # W48: no final run
        HistoryRun("Cancel", "2026-11-16T10:00", {"c1": "PASS"}),   # W47
    ])
    (heatmap,) = pass_rate_by_week(data).data
    assert heatmap.type == "heatmap"
    assert heatmap.x == ("2026-W45", "2026-W46", "2026-W47", "2026-W48")  # W47 and W48 are columns for Refund too
    assert heatmap.y == ("Cancel", "Refund")
    assert [list(row) for row in heatmap.z] == [[None, None, 100.0, None], [50.0, 0.0, None, None]]
    refund = heatmap.customdata[1]
    assert "run pass rate 50.0%: 1 of 2 final runs passed (2 runs in all)" in refund[0]
    assert "week 2026-W46 (from 2026-11-09)" in refund[1] and "0 of 1 final runs passed" in refund[1]
    assert refund[2].endswith("no runs") and refund[3].endswith("1 runs, none final yet")
    assert heatmap.hoverongaps is False and (heatmap.zmin, heatmap.zmax) == (0, 100)


def test_the_whole_criterion_text_shows_on_hover() -> None:
    question = "Did the agent " + " ".join(f"check point {n}" for n in range(40)) + "?"
    data = history_report([HistoryRun("Refund", "2026-11-02T10:00", {"c1": "FAIL"})])
    data = dataclasses.replace(data, criteria=[dict(data.criteria[0], criteria_question=question)])
    (bar,) = failing_criteria(data).data
    assert "…" in bar.y[0]  # the axis label is cut short
    hover = bar.hovertext[0]
    assert " ".join(hover.split("</b>")[0].removeprefix("<b>").split("<br>")) == question
    assert max(len(line) for line in hover.split("<br>")) <= 90  # wrapped, not one line across the screen
