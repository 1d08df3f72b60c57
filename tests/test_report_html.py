"""The report from the demo data: every chart, plotly embedded, nothing fetched from the network, text escaped."""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from flows.demo import run_demo
from tests.analytics_golden import PRICES
from warehouse.reader import open_analytics
from warehouse.report_charts import CHARTS
from warehouse.report_data import NO_PRICE, ReportData, collect
from warehouse.report_html import render_html
from warehouse.report_markdown import summary_markdown
from warehouse.report_terminal import print_report

REMOTE = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    out_dir = tmp_path_factory.mktemp("report") / "demo"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", printed)
        assert run_demo(sessions=40, out_dir=out_dir, seed=5) == 0
    yield out_dir, printed.getvalue()


def report_data(out_dir: Path, **kwargs: object) -> ReportData:
    opened = open_analytics(out_dir, **kwargs)  # type: ignore[arg-type]
    try:
        return collect(opened)
    finally:
        opened.close()


def test_the_demo_ends_by_pointing_at_its_report(demo: tuple[Path, str]) -> None:
    out_dir, printed = demo
    assert f"Report: {out_dir / 'report.html'}" in printed
    assert f"piper-etl report --out {out_dir}" in printed
    assert (out_dir / "report.html").stat().st_size > 1_000_000


def test_the_report_has_every_chart_and_opens_offline(demo: tuple[Path, str]) -> None:
    page = (demo[0] / "report.html").read_text(encoding="utf-8")
    for chart_id in CHARTS:
        assert f'<div id="{chart_id}"' in page, chart_id
    assert page.count("Plotly.newPlot(") == len(CHARTS)  # interactive plotly charts, not pictures
    assert page.count("* plotly.js v") == 1  # the library itself, embedded once
    assert not REMOTE.search(page), REMOTE.search(page)
    assert "cdn.plot.ly/plotly" not in page and "@import" not in page
    assert "No judge token price is set" in page  # the demo sets no price


def test_charts_show_cost_when_a_price_is_set(demo: tuple[Path, str]) -> None:
    data = report_data(demo[0], prices=PRICES)
    page = render_html(data)
    assert "Judge cost by scenario (estimated USD)" in page and "Judge cost by day (estimated USD" in page
    assert "judge-golden" in page and NO_PRICE not in page
    assert data.totals["estimated_cost_usd"] > 0


def test_critiques_and_names_are_escaped(demo: tuple[Path, str]) -> None:
    data = report_data(demo[0])
    hostile = "[bold]x[/bold] <script>alert('x')</script> &"
    criteria = [dict(row, latest_failing_critique=hostile, scenario_name=hostile) for row in data.criteria]
    scenarios = [dict(row, scenario_name=hostile) for row in data.scenarios]
    data = dataclasses.replace(data, criteria=criteria, scenarios=scenarios)
    page = render_html(data)
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    printed = io.StringIO()
    print_report(data, Console(file=printed, width=100))
    assert "[bold]x[/bold]" in printed.getvalue()  # shown as typed, not taken as rich markup
    assert "<script>alert" not in summary_markdown(data)


def test_the_terminal_report_fits_in_100_columns(demo: tuple[Path, str]) -> None:
    printed = io.StringIO()
    print_report(report_data(demo[0]), Console(file=printed, width=100))
    text = printed.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 100
    # the demo commits two loads and two syncs
    for heading in ("Scenarios", "Criteria that fail most", "By UTC day", "Loads (last 4 of 4)", NO_PRICE[:40]):
        assert heading in text, heading


def test_a_filter_that_matches_nothing_still_gives_a_report(demo: tuple[Path, str]) -> None:
    data = report_data(demo[0], scenario="no such scenario")
    assert data.totals["runs"] == 0 and data.scenarios == [] and data.criteria == []
    page = render_html(data)
    for chart_id in CHARTS:
        assert f'<div id="{chart_id}"' in page
    printed = io.StringIO()
    print_report(data, Console(file=printed, width=100))
    assert "No runs match" in printed.getvalue()
