"""`piper-etl check` over real warehouses (Parquet and the snapshot): exit codes, the table, --json, usage errors."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from flows.chunks import log_row, log_table
from tests.conftest import Cli
from tests.history_builder import LOADED_AT, HistoryRun, history_tables
from warehouse.load import open_load
from warehouse.records import LoadCounts

AS_OF = "2026-11-30T00:00"


def write_history(out_dir: Path, runs: Sequence[HistoryRun], *, format: str = "both",
                  test_scenarios: Sequence[str] = ()) -> None:
    """The history landed and committed by one load transaction, like a load of those sessions."""
    with open_load(out_dir, format=format) as load:  # type: ignore[arg-type]
        tables = {}
        for name, table in history_tables(runs).items():
            tables[name] = table.set_column(table.schema.get_field_index("_load_id"), "_load_id",
                                            pa.array([load.load_id] * table.num_rows, pa.string()))
        rows = tables["runs"].to_pylist()
        is_test = [row["scenario_name"] in test_scenarios for row in rows]
        tables["runs"] = tables["runs"].set_column(tables["runs"].schema.get_field_index("is_test"), "is_test",
                                                   pa.array(is_test, pa.bool_()))
        tables["fetch_log"] = log_table([
            log_row(load.load_id, str(row["session_id"]), "loaded", fetched_at=LOADED_AT, run_id=str(row["run_id"]))
            for row in rows
        ])
        load.land("history", tables)
        counts = LoadCounts(Counter({"loaded": len(rows)}), Counter({n: t.num_rows for n, t in tables.items()}))
        load.commit("succeeded", counts, {})


def daily(scenario: str, first_day: int, count: int, passed: int, month: int = 11) -> list[HistoryRun]:
    """`count` runs on consecutive days of the month from `first_day`; the first `passed` pass c1, the rest fail it."""
    return [HistoryRun(scenario, f"2026-{month:02d}-{first_day + i:02d}T10:00",
                       {"c1": "PASS" if i < passed else "FAIL", "c2": "PASS"})
            for i in range(count)]


HISTORY = [
    *daily("Refund", 1, 10, 9), *daily("Refund", 23, 5, 2),  # 90 % -> 40 %: regressed
    *daily("Cancel", 1, 5, 5), *daily("Cancel", 23, 5, 5),  # 100 % -> 100 %: held
    *daily("Onboard", 1, 2, 2), *daily("Onboard", 23, 3, 0),  # too few runs: not judged
    *daily("Probe", 1, 5, 5), *daily("Probe", 23, 5, 0),  # test sessions: regressed, but left out by default
]

STORES = {"both": "parquet", "duckdb": "snapshot"}


@pytest.fixture(scope="module", params=sorted(STORES))
def warehouse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out_dir = tmp_path_factory.mktemp(f"check-{request.param}") / "out"
    write_history(out_dir, HISTORY, format=request.param, test_scenarios=["Probe"])
    return out_dir, STORES[request.param]


def check(cli: Cli, out_dir: Path, *args: str) -> tuple[int, str, str]:
    result = cli("check", "--out", str(out_dir), "--as-of", AS_OF, *args)
    return result.code, result.stdout, result.stderr


def table_rows(stdout: str, names: Sequence[str]) -> dict[str, list[str]]:
    """The cells of the scenario table's rows that start with one of the names (names without spaces)."""
    rows = {}
    for line in stdout.split("New failing criteria")[0].splitlines():
        cells = line.split()
        if cells and cells[0] in names and len(cells) >= 7:
            rows[cells[0]] = [*cells[1:6], " ".join(cells[6:])]
    return rows


def test_a_regression_exits_1_and_the_table_shows_both_rates_and_counts(
    cli: Cli, warehouse: tuple[Path, str]
) -> None:
    out_dir, store = warehouse
    code, stdout, stderr = check(cli, out_dir)
    assert code == 1, stderr
    assert stderr.startswith("piper-etl check: reading ")
    assert ("snapshot" in stderr) == (store == "snapshot") and ("piper-bi.duckdb" in stderr) == (store == "snapshot")
    assert table_rows(stdout, ["Refund", "Cancel", "Onboard", "Probe"]) == {
        "Refund": ["10", "90.0%", "5", "40.0%", "50.0", "regressed"],
        "Cancel": ["5", "100.0%", "5", "100.0%", "0.0", "held"],
        "Onboard": ["2", "100.0%", "3", "0.0%", "100.0", "not judged"],
    }
    assert "REGRESSED: 1 scenario: Refund" in stdout
    assert "test sessions left out" in stdout


def test_nothing_regressed_exits_0(cli: Cli, warehouse: tuple[Path, str]) -> None:
    out_dir, _ = warehouse
    code, stdout, _ = check(cli, out_dir, "--scenario", "Cancel")
    assert code == 0
    assert list(table_rows(stdout, ["Refund", "Cancel", "Onboard"])) == ["Cancel"]
    assert "No scenario regressed (1 held, 0 not judged)." in stdout
    code, stdout, _ = check(cli, out_dir, "--max-drop", "50")  # Refund fell by exactly 50 points: it held
    assert code == 0 and table_rows(stdout, ["Refund"])["Refund"][-1] == "held"


def test_the_json_document_says_what_the_table_says(cli: Cli, warehouse: tuple[Path, str]) -> None:
    out_dir, _ = warehouse
    for extra in ((), ("--include-test",)):
        code, table, _ = check(cli, out_dir, *extra)
        json_code, text, stderr = check(cli, out_dir, "--json", *extra)
        assert json_code == code == 1 and "piper-etl check: reading " in stderr
        doc = json.loads(text)
        shown = table_rows(table, [s["scenario_name"] for s in doc["scenarios"]])
        assert len(shown) == len(doc["scenarios"]) == (4 if extra else 3)
        for s in doc["scenarios"]:
            assert shown[s["scenario_name"]] == [
                str(s["baseline_runs"]), f"{s['baseline_pass_rate'] * 100:.1f}%", str(s["window_runs"]),
                f"{s['window_pass_rate'] * 100:.1f}%", f"{s['drop_points']:.1f}", s["status"]]
        assert doc["regressed"] is True and doc["include_test"] is bool(extra)
        assert (doc["as_of"], doc["window"], doc["baseline"], doc["max_drop"], doc["min_runs"]) == (
            "2026-11-30T00:00:00+00:00", "7d", "28d", 10.0, 5)
        failures = [(f["scenario_name"], f["criteria_id"], f["window_fails"]) for f in doc["new_failures"]]
        # Refund's c1 failed in the baseline too: not new
        assert failures == [("Onboard", "c1", 3), *([("Probe", "c1", 5)] if extra else [])]
        for name, _, fails in failures:
            assert any(line.split()[:1] == [name] and f"{fails}/{fails}" in line for line in table.splitlines())


def test_test_sessions_count_with_include_test(cli: Cli, warehouse: tuple[Path, str]) -> None:
    out_dir, _ = warehouse
    code, stdout, _ = check(cli, out_dir, "--include-test", "--scenario", "Probe")
    assert code == 1
    assert table_rows(stdout, ["Probe"]) == {"Probe": ["5", "100.0%", "5", "0.0%", "100.0", "regressed"]}
    assert "Question c1?" in stdout and "passed 5" in stdout  # the new failure, and that it passed before
    code, stdout, _ = check(cli, out_dir, "--scenario", "Probe")  # its runs left out: nothing to judge
    assert code == 0 and "No final run started in either window: nothing to judge." in stdout


def test_as_of_a_date_is_the_end_of_that_day(cli: Cli, warehouse: tuple[Path, str]) -> None:
    out_dir, _ = warehouse
    by_date = cli("check", "--out", str(out_dir), "--as-of", "2026-11-29", "--json")
    doc = json.loads(by_date.stdout)
    assert doc["as_of"] == "2026-11-30T00:00:00+00:00" and by_date.code == 1
    early = cli("check", "--out", str(out_dir), "--as-of", "2026-11-24T12:00+02:00", "--json", "--min-runs", "1")
    doc = json.loads(early.stdout)
    assert doc["as_of"] == "2026-11-24T10:00:00+00:00"
    refund = next(s for s in doc["scenarios"] if s["scenario_name"] == "Refund")
    assert (refund["baseline_runs"], refund["window_runs"]) == (10, 2)  # 11-23 and 11-24 at 10:00 UTC


def test_usage_errors_exit_2(cli: Cli, warehouse: tuple[Path, str], tmp_path: Path) -> None:
    out_dir, _ = warehouse
    for bad in (["--window", "7"], ["--window", "0d"], ["--baseline", "1.5d"], ["--max-drop", "101"],
                ["--max-drop", "x"], ["--min-runs", "0"], ["--as-of", "yesterday"], ["--as-of", "2026-13-01"]):
        result = cli("check", "--out", str(out_dir), *bad)
        assert result.code == 2, bad
        assert f"argument {bad[0]}" in result.stderr and result.stdout == ""
    assert cli("check", "--out", str(out_dir), "--window", "7").stderr.splitlines()[-1] == (
        "piper-etl check: error: argument --window: not a duration: '7' "
        "(a whole number above 0 and a unit: 90m, 12h, 7d, 2w)")
    unknown = cli("check", "--out", str(out_dir), "--scenario", "refund")
    assert unknown.code == 2 and unknown.stdout == ""
    assert unknown.stderr.splitlines()[-1] == (
        "piper-etl check: error: no scenario named 'refund' (by name or id); "
        "known scenarios: 'Cancel', 'Onboard', 'Probe', 'Refund'")
    far = cli("check", "--out", str(out_dir), "--baseline", "999999w")
    assert far.code == 2 and "before the year 1" in far.stderr
    empty = cli("check", "--out", str(tmp_path / "nothing-here"))
    assert empty.code == 2 and "piper-etl check: error: nothing to read in" in empty.stderr


def test_a_window_without_runs_judges_nothing(cli: Cli, warehouse: tuple[Path, str]) -> None:
    out_dir, _ = warehouse
    result = cli("check", "--out", str(out_dir), "--as-of", "2027-06-01", "--json")
    assert result.code == 0
    assert json.loads(result.stdout)["scenarios"] == [] and json.loads(result.stdout)["regressed"] is False


def test_text_from_the_api_reaches_the_terminal_without_escape_sequences() -> None:
    import io

    from rich.console import Console

    from flows.check_cli import print_check
    from tests.history_builder import history_connection
    from warehouse.regressions import check as check_history

    evil = "Evil\x1b]8;;http://x\x1b\\link\x1b[2J [red]x[/red]"
    con = history_connection([*daily(evil, 1, 5, 5), *daily(evil, 23, 5, 0)])
    result = check_history(con, as_of=datetime(2026, 11, 30, tzinfo=UTC))
    shown = io.StringIO()
    print_check(result, Console(file=shown, width=200, color_system=None))
    text = shown.getvalue()
    assert "\x1b" not in text and "Evillink [red]x[/red]" in text  # markup shown as text, not applied
    document = json.dumps(result.to_json(), indent=2)
    assert "\x1b" not in document and json.loads(document)["scenarios"][0]["scenario_name"] == evil
