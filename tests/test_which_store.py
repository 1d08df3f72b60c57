"""`piper-etl sql` and `piper-etl report` say on stderr which store they read, in the words the README uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import build_parser
from tests.conftest import Cli, SimulatedPiper, load_args

README = Path(__file__).resolve().parents[1] / "README.md"
PARQUET = "reading {out}/parquet (current state of the Parquet files)"
SNAPSHOT = "reading the snapshot {out}/piper-bi.duckdb (published by the last load that wrote DuckDB)"


@pytest.mark.parametrize(("load_format", "line"), [("both", PARQUET), ("parquet", PARQUET), ("duckdb", SNAPSHOT)])
def test_sql_and_report_name_the_store_they_read(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, load_format: str, line: str
) -> None:
    assert cli(*load_args(piper, out_dir, "--format", load_format, *piper.dataset.session_ids[:3])).code == 0
    expected = line.format(out=out_dir)
    sql = cli("sql", "--out", str(out_dir), "--csv", "SELECT count(*) AS n FROM runs")
    assert (sql.code, sql.stdout, sql.stderr) == (0, "n\n3\n", f"piper-etl sql: {expected}\n")
    report = cli("report", "--out", str(out_dir))
    assert (report.code, report.stderr) == (0, f"piper-etl report: {expected}\n")
    failed = cli("sql", "--out", str(out_dir), "SELECT no_such_column FROM runs")
    assert failed.code == 1 and failed.stderr.startswith(f"piper-etl sql: {expected}\npiper-etl sql: error: ")


def test_nothing_to_read_says_so_without_naming_a_store(cli: Cli, tmp_path: Path) -> None:
    result = cli("sql", "--out", str(tmp_path))
    assert result.code == 2 and "reading" not in result.stderr


def test_the_readme_shows_both_lines() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    for line in (PARQUET, SNAPSHOT):
        assert line.format(out="OUT") in text, line


@pytest.mark.parametrize("command", ["report", "sql"])
def test_the_help_says_the_store_is_named_on_stderr(command: str) -> None:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    text = " ".join(subparsers.choices[command].format_help().split())  # type: ignore[index]
    assert "on stderr" in text
