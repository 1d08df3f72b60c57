"""Exit statuses and the exact messages a person reads when the command is called wrongly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import build_parser, read_session_ids
from tests.conftest import Cli, SimulatedPiper, load_args, query

README = Path(__file__).resolve().parents[1] / "README.md"


def test_no_session_ids_is_a_usage_error(cli: Cli) -> None:
    result = cli("load", "--org-id", "org")
    assert result.code == 2
    expected = "piper-etl load: error: no session ids: pass them as arguments or with --sessions-file FILE\n"
    assert result.stderr == expected


def test_missing_org_is_a_usage_error(cli: Cli) -> None:
    result = cli("load", "s-1")
    assert result.code == 2
    assert result.stderr == "piper-etl load: error: no org id: pass --org-id or set PIPER_ORG_ID\n"


def test_unknown_flag_is_a_usage_error(cli: Cli) -> None:
    result = cli("load", "--org-id", "org", "--frobnicate", "s-1")
    assert result.code == 2 and "unrecognized arguments: --frobnicate" in result.stderr


def test_missing_token_is_a_usage_error(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPER_API_TOKEN")
    result = cli("load", "--org-id", "org", "s-1")
    assert result.code == 2
    assert result.stderr == "piper-etl load: error: no API token: set the PIPER_API_TOKEN environment variable\n"


def test_plain_http_to_a_remote_host_is_refused(cli: Cli, out_dir: Path) -> None:
    result = cli("load", "--org-id", "org", "--base-url", "http://api.example.com", "--out", str(out_dir), "s-1")
    assert result.code == 2 and "use https" in result.stderr


def test_unreadable_sessions_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("load", "--org-id", "org", "--sessions-file", str(tmp_path / "missing.txt"))
    assert result.code == 2 and "cannot read sessions file" in result.stderr


def test_sessions_file_rules() -> None:
    lines = ["  s-1  \n", "\n", "# a comment\n", "s-2\n", "   \n", "s-1\n", "\ts-3\t\n"]
    assert read_session_ids(lines) == ["s-1", "s-2", "s-1", "s-3"]


def test_sessions_file_and_stdin_feed_the_load(piper: SimulatedPiper, out_dir: Path, cli: Cli, tmp_path: Path) -> None:
    a, b, c = piper.dataset.session_ids[:3]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"# first batch\n{a}\n\n  {b}  \n{a}\n", encoding="utf-8")
    assert cli(*load_args(piper, out_dir, "--sessions-file", str(ids_file), c)).code == 0
    assert query(out_dir, "SELECT count(*) FROM fetch_log")[0][0] == 3
    assert cli(*load_args(piper, out_dir, "--sessions-file", "-"), stdin=f"{a}\n# x\n{c}\n").code == 0
    assert query(out_dir, "SELECT sessions_requested FROM loads ORDER BY load_id")[-1][0] == 2


def test_summary_line_is_printed(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    result = cli(*load_args(piper, out_dir, piper.dataset.session_ids[0]))
    assert result.code == 0
    assert result.stdout.count("\n") == 1
    assert "succeeded: 1 sessions: 1 loaded, 0 skipped, 0 not found, 0 failed, 0 rejected" in result.stdout


@pytest.mark.parametrize("command", ["load", "report", "sql", "demo", "fake-api"])
def test_every_command_has_help_and_is_in_the_readme(command: str) -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    sub = subparsers.choices[command]  # type: ignore[index]
    assert sub.description and sub.format_help()
    assert f"piper-etl {command}" in README.read_text(encoding="utf-8")


def test_console_script_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "load" in done.stdout
