"""`piper-etl report` and `piper-etl sql`: exit statuses, the messages a person reads, and what they print."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import build_parser
from tests.conftest import Cli, SimulatedPiper, load_args, query

NOTHING = "nothing to read in {out}: no Parquet files under {out}/parquet and no piper-bi.duckdb; " \
          "run piper-etl load (or piper-etl demo) first"


@pytest.fixture
def loaded(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> Path:
    assert cli(*load_args(piper, out_dir, *piper.dataset.session_ids[:12])).code == 0
    return out_dir


@pytest.mark.parametrize("command", ["report", "sql"])
def test_an_empty_folder_is_a_usage_error(cli: Cli, tmp_path: Path, command: str) -> None:
    result = cli(command, "--out", str(tmp_path))
    assert result.code == 2
    assert result.stderr == f"piper-etl {command}: error: " + NOTHING.format(out=tmp_path) + "\n"


def test_sql_without_a_query_lists_the_views(loaded: Path, cli: Cli) -> None:
    result = cli("sql", "--out", str(loaded))
    assert result.code == 0
    assert result.stdout.startswith(f"Reading {loaded / 'parquet'}.\n")
    for name in ("runs, turns, criteria_results", "scenario_summary", "criteria_summary", "daily_summary",
                 "run_costs", "failures"):
        assert name in result.stdout


def test_sql_prints_a_table_or_csv(loaded: Path, cli: Cli) -> None:
    result = cli("sql", "--out", str(loaded), "SELECT sum(runs) AS runs FROM scenario_summary")
    assert result.code == 0 and "runs" in result.stdout and "12" in result.stdout and "1 row" in result.stdout
    result = cli("sql", "--out", str(loaded), "--csv", "SELECT 'a,b' AS x, NULL AS y UNION ALL SELECT 'c', 2")
    assert (result.code, result.stdout) == (0, 'x,y\n"a,b",\nc,2\n')
    result = cli("sql", "--out", str(loaded), "--csv", "-", stdin="SELECT count(*) AS n FROM runs\n")
    assert (result.code, result.stdout) == (0, "n\n12\n")


def test_a_failing_query_exits_1_with_duckdbs_message(loaded: Path, cli: Cli) -> None:
    result = cli("sql", "--out", str(loaded), "SELECT no_such_column FROM runs")
    assert result.code == 1 and result.stdout == ""
    reading, error = result.stderr.split("\n", 1)
    assert reading.startswith("piper-etl sql: reading ")  # the store it read: tests/test_which_store.py
    assert error.startswith('piper-etl sql: error: Binder Error: Referenced column "no_such_column" not found')


def test_report_prints_its_tables_and_writes_the_html(loaded: Path, cli: Cli, tmp_path: Path) -> None:
    html = tmp_path / "elsewhere" / "r.html"
    result = cli("report", "--out", str(loaded), "--html", str(html))
    assert result.code == 0, result.stderr
    assert html.stat().st_size > 1_000_000
    assert f"it opens offline in any browser):\n  {html}\n" in result.stdout
    for heading in ("Piper report", "12 runs", "Scenarios", "Loads (last 1 of 1)", "No judge token price is set"):
        assert heading in result.stdout, heading
    assert max(len(line) for line in result.stdout.splitlines() if str(tmp_path) not in line) <= 100
    assert cli("report", "--out", str(loaded)).code == 0
    assert (loaded / "report.html").exists()  # the default place


def test_report_filters_by_scenario_and_day(loaded: Path, cli: Cli) -> None:
    (name, runs), *_ = query(loaded, "SELECT scenario_name, count(*) FROM runs GROUP BY 1 ORDER BY 2 DESC, 1")
    result = cli("report", "--out", str(loaded), "--scenario", name, "--since", "2000-01-01")
    assert result.code == 0
    printed = " ".join(result.stdout.split())  # the headline wraps at 100 columns
    assert f"runs started on or after 2000-01-01 (UTC); scenario {name!r}" in printed
    assert f") {runs} runs, " in printed
    future = cli("report", "--out", str(loaded), "--since", "2999-01-01")
    assert future.code == 0 and "0 runs" in future.stdout and "No runs match" in future.stdout


def test_report_usage_errors(loaded: Path, cli: Cli, tmp_path: Path) -> None:
    bad_date = cli("report", "--out", str(loaded), "--since", "yesterday")
    assert bad_date.code == 2 and "argument --since: not a date (YYYY-MM-DD): 'yesterday'" in bad_date.stderr
    missing = cli("report", "--out", str(loaded), "--pricing", str(tmp_path / "none.toml"))
    assert missing.code == 2
    assert missing.stderr == f"piper-etl report: error: cannot read pricing file {tmp_path / 'none.toml'}: " \
                             "No such file or directory\n"


def test_report_uses_a_price_given_on_its_command_line(loaded: Path, cli: Cli, tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."judge-t"]\ninput_usd_per_million = 3\noutput_usd_per_million = 15\n', "utf-8")
    result = cli("report", "--out", str(loaded), "--pricing", str(prices))
    assert result.code == 0
    assert "Costs use judge model 'judge-t' at $3 per million input tokens and $15 per million output" in result.stdout
    assert "No judge token price is set" not in result.stdout


@pytest.mark.parametrize("command", ["report", "sql"])
def test_help_texts(command: str) -> None:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    text = subparsers.choices[command].format_help()  # type: ignore[index]
    for option in ("--out DIR", "--pricing FILE", "--judge-model NAME"):
        assert option in text, option
    if command == "report":
        assert "--html FILE" in text and "--since DATE" in text and "--scenario NAME" in text
    else:
        assert "QUERY" in text and "--csv" in text
