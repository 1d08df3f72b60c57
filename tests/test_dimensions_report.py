"""`piper-etl report --agent/--tag/--include-test`: which runs the report counts (the golden dataset)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.test_analytics_everywhere import write_golden_output
from warehouse.reader import open_analytics
from warehouse.report_data import collect, scenario_label


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    write_golden_output(tmp_path)
    return tmp_path


def counted(out: Path, **filters: object) -> dict[str, int]:
    """Scenario label -> runs, as the report's scenario table shows them."""
    opened = open_analytics(out, **filters)  # type: ignore[arg-type]
    try:
        data = collect(opened)
    finally:
        opened.close()
    return {scenario_label(row): row["runs"] for row in data.scenarios}


def test_the_report_leaves_test_sessions_out_unless_asked(golden: Path) -> None:
    assert counted(golden, include_test=False) == {"Refund": 4, "Cancel": 4}  # u1 is a test session's run
    assert counted(golden) == {"Refund": 4, "Cancel": 4, "Upgrade (test sessions)": 1}


@pytest.mark.parametrize(("agent", "expected"), [
    ("Ana", {"Refund": 2}), ("agent-1", {"Refund": 2}),  # by name or by id; a2 from its sessions row
    ("Bo", {"Cancel": 3, "Upgrade (test sessions)": 1}), ("nobody", {}),
])
def test_agent_filter(golden: Path, agent: str, expected: dict[str, int]) -> None:
    assert counted(golden, agent=agent) == expected


@pytest.mark.parametrize(("tag", "expected"), [
    ("churn", {"Cancel": 4}), ("billing", {"Refund": 4, "Upgrade (test sessions)": 1}), ("none", {}),
])
def test_tag_filter(golden: Path, tag: str, expected: dict[str, int]) -> None:
    assert counted(golden, tag=tag) == expected


def test_the_filters_combine_and_keep_children_with_their_runs(golden: Path) -> None:
    opened = open_analytics(golden, agent="Bo", tag="billing", include_test=False)
    try:
        assert opened.con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        assert opened.con.execute("SELECT count(*) FROM criteria_results").fetchone() == (0,)
    finally:
        opened.close()
    opened = open_analytics(golden, agent="Bo", include_test=False)
    try:
        assert opened.con.execute("SELECT list(run_id ORDER BY run_id) FROM runs").fetchone() == (["b1", "b2", "b3"],)
        assert opened.con.execute("SELECT count(DISTINCT run_id) FROM criteria_results").fetchone() == (3,)
    finally:
        opened.close()


def test_report_flags(golden: Path, cli: Cli) -> None:
    default = cli("report", "--out", str(golden))
    assert default.code == 0, default.stderr
    text = " ".join(default.stdout.split())  # the headline wraps at 100 columns
    assert "test sessions left out (--include-test counts them)" in text and "8 runs" in text
    assert "Upgrade" not in text
    included = cli("report", "--out", str(golden), "--include-test", "--agent", "Bo", "--tag", "billing")
    assert included.code == 0, included.stderr
    text = " ".join(included.stdout.split())
    assert "agent 'Bo'; scenarios tagged 'billing'" in text and "1 runs" in text
    assert "Upgrade (test sessions)" in text
