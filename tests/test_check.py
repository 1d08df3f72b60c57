"""The regression gate's logic (warehouse/regressions.py) on hand-built histories with known answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import duckdb
import pytest

from tests.history_builder import HistoryRun, history_connection
from warehouse.regressions import CheckResult, UnknownScenarioError, check, duration_text

AS_OF = datetime(2026, 11, 30, tzinfo=UTC)  # window (11-23 00:00, 11-30 00:00], baseline (10-26 00:00, 11-23 00:00]


def runs_of(scenario: str, days: Sequence[str], passed: int, *, hour: int = 10) -> list[HistoryRun]:
    """One run a day (ISO dates); the first `passed` pass criterion c1, the rest fail it."""
    return [HistoryRun(scenario, f"{day}T{hour:02d}:00", {"c1": "PASS" if i < passed else "FAIL"})
            for i, day in enumerate(days)]


def days(start: str, count: int) -> list[str]:
    first = datetime.fromisoformat(start)
    return [(first + timedelta(days=i)).date().isoformat() for i in range(count)]


BASELINE_DAYS = days("2026-10-27", 20)  # 10-27 .. 11-15, inside the baseline
WINDOW_DAYS = days("2026-11-23", 7)  # 11-23 .. 11-29, inside the window


def only(result: CheckResult) -> tuple[int, int, float | None, float | None, float | None, str]:
    [s] = result.scenarios
    return (s.baseline_runs, s.window_runs, s.baseline_pass_rate, s.window_pass_rate, s.drop_points, s.status)


def test_a_scenario_that_fell_regressed_and_one_that_held_did_not() -> None:
    con = history_connection([
        *runs_of("Refund", BASELINE_DAYS[:10], 9), *runs_of("Refund", WINDOW_DAYS[:5], 2),
        *runs_of("Cancel", BASELINE_DAYS[:10], 9), *runs_of("Cancel", WINDOW_DAYS[:5], 5),
    ])
    result = check(con, as_of=AS_OF)
    assert result.regressed
    assert [(s.scenario_name, s.status) for s in result.scenarios] == [("Refund", "regressed"), ("Cancel", "held")]
    refund, cancel = result.scenarios
    assert (refund.scenario_id, refund.baseline_runs, refund.baseline_passed, refund.window_runs,
            refund.window_passed) == ("sc-refund", 10, 9, 5, 2)
    assert refund.baseline_pass_rate == pytest.approx(0.9) and refund.window_pass_rate == pytest.approx(0.4)
    assert refund.drop_points == pytest.approx(50.0)
    assert cancel.drop_points == pytest.approx(-10.0)  # it improved
    assert [s.scenario_name for s in result.regressions] == ["Refund"]


def test_nothing_regressed_on_a_steady_history() -> None:
    con = history_connection([*runs_of("Refund", BASELINE_DAYS, 18), *runs_of("Refund", WINDOW_DAYS, 6)])
    result = check(con, as_of=AS_OF)
    assert not result.regressed and only(result)[-1] == "held"


def test_window_boundaries_are_open_at_the_start_and_closed_at_the_end() -> None:
    at = "2026-11-23T00:00"  # the window's start: the baseline's end
    con = history_connection([
        HistoryRun("Refund", "2026-10-26T00:00", {"c1": "FAIL"}),  # the baseline's start: in neither window
        HistoryRun("Refund", "2026-10-26T00:00:00.000001", {"c1": "PASS"}),  # just inside the baseline
        HistoryRun("Refund", at, {"c1": "PASS"}),  # the baseline's last instant
        HistoryRun("Refund", "2026-11-23T00:00:00.000001", {"c1": "FAIL"}),  # the window's first
        HistoryRun("Refund", "2026-11-30T00:00", {"c1": "PASS"}),  # as_of itself: in the window
        HistoryRun("Refund", "2026-11-30T00:00:00.000001", {"c1": "FAIL"}),  # after as_of: in neither
    ])
    result = check(con, as_of=AS_OF, min_runs=1)
    assert only(result) == (2, 2, 1.0, 0.5, 50.0, "regressed")
    assert (result.window_start, result.baseline_start) == (datetime(2026, 11, 23, tzinfo=UTC),
                                                            datetime(2026, 10, 26, tzinfo=UTC))


def test_other_window_and_baseline_lengths() -> None:
    con = history_connection([
        HistoryRun("Refund", "2026-11-29T11:00", {"c1": "PASS"}),  # in a 12h baseline before a 12h window
        HistoryRun("Refund", "2026-11-29T13:00", {"c1": "FAIL"}),  # in the 12h window
        HistoryRun("Refund", "2026-11-28T23:00", {"c1": "FAIL"}),  # before the 12h baseline
    ])
    result = check(con, as_of=AS_OF, window=timedelta(hours=12), baseline=timedelta(hours=12), min_runs=1)
    assert only(result) == (1, 1, 1.0, 0.0, 100.0, "regressed")


def test_fewer_than_min_runs_in_either_window_is_not_judged() -> None:
    con = history_connection([
        *runs_of("Refund", BASELINE_DAYS[:10], 10), *runs_of("Refund", WINDOW_DAYS[:4], 0),  # 4 < 5 in the window
        *runs_of("Cancel", BASELINE_DAYS[:4], 4), *runs_of("Cancel", WINDOW_DAYS[:6], 0),  # 4 < 5 in the baseline
        *runs_of("Gone", BASELINE_DAYS[:9], 9),  # no run in the window
    ])
    result = check(con, as_of=AS_OF)
    assert not result.regressed
    by_name = {s.scenario_name: s for s in result.scenarios}
    assert {name: s.status for name, s in by_name.items()} == {
        "Refund": "not judged", "Cancel": "not judged", "Gone": "not judged"}
    assert by_name["Refund"].drop_points == pytest.approx(100.0)  # shown, not judged
    gone = by_name["Gone"]
    assert (gone.window_runs, gone.window_pass_rate, gone.drop_points) == (0, None, None)
    assert {s.scenario_name for s in check(con, as_of=AS_OF, min_runs=4).regressions} == {"Refund", "Cancel"}


def test_a_drop_of_exactly_max_drop_holds_and_a_hair_more_regresses() -> None:
    con = history_connection([*runs_of("Refund", BASELINE_DAYS[:10], 9), *runs_of("Refund", WINDOW_DAYS[:5], 4)])
    exact = check(con, as_of=AS_OF)  # 90 % -> 80 %: 10 points, which in floats is 10.000000000000009
    assert only(exact) == (10, 5, 0.9, 0.8, 10.0, "held")
    assert only(check(con, as_of=AS_OF, max_drop=9.999))[-1] == "regressed"
    assert only(check(con, as_of=AS_OF, max_drop=0))[-1] == "regressed"
    assert only(check(con, as_of=AS_OF, max_drop=100))[-1] == "held"


def test_a_fractional_drop_against_a_decimal_max_drop() -> None:
    # 7/10 -> 4/6 is a drop of 10/3 points = 3.333...
    con = history_connection([*runs_of("Refund", BASELINE_DAYS[:10], 7), *runs_of("Refund", WINDOW_DAYS[:6], 4)])
    assert only(check(con, as_of=AS_OF, max_drop=3.33))[-1] == "regressed"
    assert only(check(con, as_of=AS_OF, max_drop=3.34))[-1] == "held"


def test_non_final_runs_are_left_out_and_error_runs_count_as_not_passed() -> None:
    con = history_connection([
        *runs_of("Refund", BASELINE_DAYS[:5], 5),
        *[HistoryRun("Refund", f"{day}T10:00", {"c1": "PASS"}, status="error") for day in WINDOW_DAYS[:3]],
        *runs_of("Refund", WINDOW_DAYS[3:5], 2),
        *[HistoryRun("Refund", f"{day}T11:00", {"c1": "FAIL"}, status="running") for day in WINDOW_DAYS],
    ])
    assert only(check(con, as_of=AS_OF)) == (5, 5, 1.0, 0.4, 60.0, "regressed")


def test_the_scenario_filter_matches_a_name_or_an_id() -> None:
    con = history_connection([
        *runs_of("Refund", BASELINE_DAYS[:5], 5), *runs_of("Refund", WINDOW_DAYS[:5], 0),
        *runs_of("Cancel", BASELINE_DAYS[:5], 5), *runs_of("Cancel", WINDOW_DAYS[:5], 5),
    ])
    for name in ("Refund", "sc-refund"):
        result = check(con, as_of=AS_OF, scenario=name)
        assert [s.scenario_name for s in result.scenarios] == ["Refund"] and result.regressed
        assert {f.scenario_name for f in result.new_failures} == {"Refund"}
        assert result.scenario == name
    held = check(con, as_of=AS_OF, scenario="Cancel")
    assert not held.regressed and [s.scenario_name for s in held.scenarios] == ["Cancel"]


def test_an_unknown_scenario_names_the_known_ones() -> None:
    con = history_connection([*runs_of("Refund", BASELINE_DAYS[:1], 1), *runs_of("Cancel", WINDOW_DAYS[:1], 1)])
    with pytest.raises(UnknownScenarioError, match=r"'refund'.*known scenarios: 'Cancel', 'Refund'") as raised:
        check(con, as_of=AS_OF, scenario="refund")  # names match exactly
    assert raised.value.known == ("Cancel", "Refund")


def test_a_renamed_scenario_is_one_scenario_under_its_newest_name() -> None:
    con = history_connection([*runs_of("Refund", BASELINE_DAYS[:5], 5), *runs_of("Refund v2", WINDOW_DAYS[:5], 0)])
    con.execute("UPDATE runs SET scenario_id = 'sc-refund'")  # one id, two names over time
    for name in (None, "Refund", "Refund v2"):
        result = check(con, as_of=AS_OF, scenario=name)
        assert [(s.scenario_id, s.scenario_name, s.status) for s in result.scenarios] == [
            ("sc-refund", "Refund v2", "regressed")]
        assert [f.scenario_name for f in result.new_failures] == ["Refund v2"]


def mark_test_sessions(con: duckdb.DuckDBPyConnection, scenario: str) -> None:
    con.execute("UPDATE runs SET is_test = true WHERE scenario_name = ?", [scenario])


def test_runs_of_test_sessions_count_only_when_included() -> None:
    con = history_connection([
        *runs_of("Refund", BASELINE_DAYS[:5], 5), *runs_of("Refund", WINDOW_DAYS[:5], 5),
        *runs_of("Probe", BASELINE_DAYS[:5], 5), *runs_of("Probe", WINDOW_DAYS[:5], 0),
    ])
    mark_test_sessions(con, "Probe")
    default = check(con, as_of=AS_OF)
    assert [s.scenario_name for s in default.scenarios] == ["Refund"]
    assert not default.regressed and default.new_failures == () and not default.include_test
    included = check(con, as_of=AS_OF, include_test=True)
    assert [(s.scenario_name, s.status) for s in included.scenarios] == [("Probe", "regressed"), ("Refund", "held")]
    assert [f.scenario_name for f in included.new_failures] == ["Probe"]


def test_new_failures_are_criteria_that_never_failed_in_the_baseline() -> None:
    con = history_connection([
        HistoryRun("Refund", "2026-11-01T10:00", {"always": "FAIL", "broke": "PASS", "skipped": "SKIPPED"}),
        HistoryRun("Refund", "2026-11-02T10:00", {"always": "PASS", "broke": "PASS", "skipped": "PASS"}),
        HistoryRun("Refund", "2026-11-03T10:00", {"old": "FAIL"}, status="running"),  # not final: not a baseline fail
        HistoryRun("Refund", "2026-10-20T10:00", {"ancient": "FAIL"}),  # before the baseline
        HistoryRun("Refund", "2026-11-24T10:00", {"always": "FAIL", "broke": "FAIL", "skipped": "FAIL",
                                                  "old": "FAIL", "ancient": "FAIL", "brand_new": "FAIL"}),
        HistoryRun("Refund", "2026-11-26T10:00", {"broke": "FAIL", "brand_new": "PASS"}),
        HistoryRun("Refund", "2026-11-27T10:00", {"broke": "FAIL"}, status="running"),  # not final: not counted
        HistoryRun("Refund", "2026-11-28T10:00", {"passing": "PASS", "skip_only": "SKIPPED"}),
    ])
    result = check(con, as_of=AS_OF)
    found = {f.criteria_id: f for f in result.new_failures}
    assert sorted(found) == ["ancient", "brand_new", "broke", "old", "skipped"]
    broke = found["broke"]
    assert (broke.scenario_id, broke.scenario_name, broke.criteria_question) == (
        "sc-refund", "Refund", "Question broke?")
    assert (broke.window_fails, broke.window_evaluations, broke.baseline_evaluations) == (2, 2, 2)
    assert broke.last_failed_at == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert (found["brand_new"].window_fails, found["brand_new"].window_evaluations,
            found["brand_new"].baseline_evaluations) == (1, 2, 0)
    assert found["skipped"].baseline_evaluations == 1  # the SKIPPED verdict is neither a pass nor a fail
    assert [f.criteria_id for f in result.new_failures] == ["broke", "ancient", "brand_new", "old", "skipped"]


def test_as_of_moves_both_windows_and_a_naive_time_is_utc() -> None:
    con = history_connection([*runs_of("Refund", days("2026-10-01", 10), 10), *runs_of("Refund", WINDOW_DAYS, 0)])
    early = check(con, as_of=datetime(2026, 10, 20), min_runs=1)  # naive: UTC
    assert early.as_of == datetime(2026, 10, 20, tzinfo=UTC)
    assert only(early) == (10, 0, 1.0, None, None, "not judged")  # the passes, before an empty window
    late = check(con, as_of=datetime(2026, 11, 30, 2, tzinfo=timezone(timedelta(hours=2))), min_runs=1)
    assert late.as_of == AS_OF and only(late)[:2] == (0, 7)  # the passes are before this baseline
    both = check(con, as_of=AS_OF, baseline=timedelta(days=60))
    assert only(both) == (10, 7, 1.0, 0.0, 100.0, "regressed")


def test_an_empty_history_judges_nothing() -> None:
    result = check(history_connection([]), as_of=AS_OF)
    assert (result.scenarios, result.new_failures, result.regressed) == ((), (), False)


@pytest.mark.parametrize("bad", [
    {"window": timedelta(0)}, {"baseline": timedelta(hours=-1)}, {"min_runs": 0},
    {"max_drop": -1.0}, {"max_drop": 100.5}, {"max_drop": float("nan")},
])
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        check(history_connection([]), as_of=AS_OF, **bad)  # type: ignore[arg-type]


def test_the_json_document_names_everything_the_result_holds() -> None:
    con = history_connection([*runs_of("Refund", BASELINE_DAYS[:5], 5), *runs_of("Refund", WINDOW_DAYS[:5], 0)])
    doc = check(con, as_of=AS_OF).to_json()
    assert {k: doc[k] for k in ("regressed", "as_of", "window", "window_start", "baseline", "baseline_start",
                                "max_drop", "min_runs", "scenario", "include_test")} == {
        "regressed": True, "as_of": "2026-11-30T00:00:00+00:00", "window": "7d",
        "window_start": "2026-11-23T00:00:00+00:00", "baseline": "28d",
        "baseline_start": "2026-10-26T00:00:00+00:00", "max_drop": 10.0, "min_runs": 5, "scenario": None,
        "include_test": False}
    assert doc["scenarios"] == [{
        "scenario_id": "sc-refund", "scenario_name": "Refund", "baseline_runs": 5, "baseline_passed": 5,
        "baseline_pass_rate": 1.0, "window_runs": 5, "window_passed": 0, "window_pass_rate": 0.0,
        "drop_points": 100.0, "status": "regressed"}]
    assert doc["new_failures"] == [{
        "scenario_id": "sc-refund", "scenario_name": "Refund", "criteria_id": "c1",
        "criteria_question": "Question c1?", "window_fails": 5, "window_evaluations": 5, "baseline_evaluations": 5,
        "last_failed_at": "2026-11-27T10:00:00+00:00"}]


def test_durations_read_back_in_their_largest_whole_unit() -> None:
    assert [duration_text(timedelta(**kw)) for kw in ({"days": 7}, {"weeks": 2}, {"hours": 12}, {"minutes": 90},
                                                       {"seconds": 45})] == ["7d", "14d", "12h", "90m", "45s"]
