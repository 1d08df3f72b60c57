"""`report.html` in headless Chromium: every chart draws, nothing logs an error, nothing scrolls sideways at 1280 px.

Chromium is Debian's package (`.ci/run` installs it); without it these tests fail and say how to install it
(tests/chromium.py). The page is inspected the way a reader meets it: drawn SVG, bounding boxes, tick labels.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.demo import run_demo
from tests.chromium import Chromium
from tests.test_report_changes import AS_OF, history
from tests.test_report_charts import history_report
from warehouse.reader import open_analytics
from warehouse.report_charts import CHARTS
from warehouse.report_data import ReportData, collect
from warehouse.report_html import render_html, write_html

WIDTH = 1280
COUNT_AXES = {"failing-criteria": "x", "load-history": "y"}
"""Charts whose axis counts things (fails, sessions): its tick labels must be whole numbers."""
INSPECT = """(() => {
  const box = e => e.getBoundingClientRect();
  const meets = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const charts = [...document.querySelectorAll('div.plotly-graph-div')].map(div => {
    const marks = [...div.querySelectorAll('svg.main-svg .trace .point path, svg.main-svg .hm image')]
      .filter(mark => box(mark).width > 0 && box(mark).height > 0);
    const legend = div.querySelector('svg.main-svg .legend');
    const labels = [...div.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text')];
    return {
      id: div.id,
      svg: div.querySelectorAll('svg.main-svg').length,
      traces: (div._fullData || []).length,
      marks: marks.length,
      under_legend: legend ? labels.filter(label => meets(box(legend), box(label))).map(l => l.textContent) : [],
      xticks: [...div.querySelectorAll('.xtick text')].map(t => t.textContent),
      yticks: [...div.querySelectorAll('.ytick text')].map(t => t.textContent),
      empty_note: [...div.querySelectorAll('.annotation-text')].map(t => t.textContent),
    };
  });
  return {charts, scroll_width: document.documentElement.scrollWidth, window_width: window.innerWidth};
})()"""
DRAWN = "document.querySelectorAll('div.plotly-graph-div').length > 0 && [...document.querySelectorAll(" \
        "'div.plotly-graph-div')].every(div => div.querySelector('svg.main-svg .cartesianlayer'))"
INTEGER = re.compile(r"^[0-9][0-9,]*$")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    with Chromium.launch(tmp_path_factory.mktemp("chromium-profile")) as browser:
        yield browser


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("browser") / "demo"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", io.StringIO())
        assert run_demo(sessions=40, out_dir=out_dir, seed=5) == 0
    return out_dir


def report_data(out_dir: Path, **filters: object) -> ReportData:
    opened = open_analytics(out_dir, **filters)  # type: ignore[arg-type]
    try:
        return collect(opened)
    finally:
        opened.close()


def inspect(chromium: Chromium, page_file: Path) -> tuple[dict[str, Any], list[str]]:
    """What the page drew (INSPECT) and every error it logged, once its charts had the time to draw."""
    page = chromium.open(page_file, width=WIDTH)
    page.wait_for(DRAWN)
    return page.evaluate(INSPECT), page.errors


def problems(seen: dict[str, Any], errors: list[str]) -> list[str]:
    """Everything a reader would find wrong with a report page; empty when it is fine."""
    found = [f"the page logged: {error}" for error in errors]
    charts = {chart["id"]: chart for chart in seen["charts"]}
    for chart_id in CHARTS:
        chart = charts.get(chart_id)
        if chart is None:
            found.append(f"{chart_id}: no plotly chart in the page")
        elif not chart["svg"] or not chart["traces"] or not chart["marks"]:
            found.append(f"{chart_id}: not drawn ({chart['svg']} SVGs, {chart['traces']} traces, "
                         f"{chart['marks']} marks drawn)")
        elif chart["under_legend"]:
            found.append(f"{chart_id}: the legend covers {chart['under_legend']}")
    for chart_id, axis in COUNT_AXES.items():
        ticks = charts[chart_id][f"{axis}ticks"] if chart_id in charts else []
        if not ticks or not all(INTEGER.match(tick) for tick in ticks) or len(set(ticks)) < len(ticks):
            found.append(f"{chart_id}: the count axis {axis} has ticks {ticks}")
    if seen["scroll_width"] > WIDTH:
        found.append(f"the page is {seen['scroll_width']} px wide in a {WIDTH} px window: it scrolls sideways")
    return found


def test_the_demo_report_draws_every_chart_and_fits_1280_px(chromium: Chromium, demo: Path) -> None:
    seen, errors = inspect(chromium, demo / "report.html")
    assert problems(seen, errors) == []
    assert [chart["id"] for chart in seen["charts"]] == list(CHARTS)
    assert seen["window_width"] == WIDTH  # the window really was 1280 px wide


def test_long_unbroken_names_and_critiques_still_fit(chromium: Chromium, demo: Path, tmp_path: Path) -> None:
    data = report_data(demo)
    long_word = "x" * 300  # a URL, an id or a name with no space to break at
    scenarios = [dict(row, scenario_name=f"{row['scenario_name']} {long_word}") for row in data.scenarios]
    criteria = [dict(row, criteria_question=f"Does it {long_word}?", latest_failing_critique=long_word * 2)
                for row in data.criteria]
    trend = [dict(row, scenario_name=f"{row['scenario_name']} {long_word}") for row in data.trend]
    page = write_html(dataclasses.replace(data, scenarios=scenarios, criteria=criteria, trend=trend),
                      tmp_path / "long.html")
    seen, errors = inspect(chromium, page)
    assert problems(seen, errors) == []


def test_what_changed_fits_with_long_criteria(chromium: Chromium, tmp_path: Path) -> None:
    long_question = "Did the agent " + "x" * 250 + " and " + " ".join(["explain the refund policy"] * 20) + "?"
    runs = [dataclasses.replace(run, verdicts={long_question if key == "c1" else key: value
                                               for key, value in run.verdicts.items()}) for run in history()]
    page = write_html(history_report(runs, as_of=AS_OF), tmp_path / "changes.html")
    seen, errors = inspect(chromium, page)
    assert errors == [] and seen["scroll_width"] <= WIDTH
    text = chromium.open(page, width=WIDTH).evaluate("document.getElementById('what-changed').textContent")
    assert text == "What changed in the 7 days before 2026-11-30 12:00 UTC"


def test_a_report_that_matches_nothing_opens_cleanly(chromium: Chromium, demo: Path, tmp_path: Path) -> None:
    page = write_html(report_data(demo, scenario="no such scenario"), tmp_path / "empty.html")
    seen, errors = inspect(chromium, page)
    assert errors == [] and seen["scroll_width"] <= WIDTH
    for chart in seen["charts"]:
        if chart["id"] != "load-history":  # loads are not filtered: the filter matches runs
            assert chart["svg"] and chart["marks"] == 0 and chart["empty_note"], chart  # drawn, empty, says why


def test_a_chart_that_does_not_draw_is_caught(chromium: Chromium, demo: Path, tmp_path: Path) -> None:
    html = render_html(report_data(demo))
    page = tmp_path / "broken.html"
    target = 'Plotly.newPlot(                        "cost-by-day",'
    assert target in html
    page.write_text(html.replace(target, 'Plotly.newPlot(                        "no-such-div",'), "utf-8")
    found = problems(*inspect(chromium, page))
    assert any(line.startswith("cost-by-day: not drawn") for line in found), found
    assert any("the page logged" in line for line in found), found  # plotly throws: no such element
    assert not any(line.startswith("failing-criteria") for line in found), found  # the others still draw
