"""API text printed in a terminal (`report`, `sql`) has its escape sequences and control characters removed.

One helper does it (warehouse/report_text.py `terminal_safe`); CSV to a file or a pipe stays faithful.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from flows.analytics_cli import run
from flows.cli import build_parser
from tests.conftest import Cli, SimulatedPiper, load_args
from warehouse.report_text import terminal_safe

HOSTILE_CRITIQUE = "\x1b]8;;http://evil\x07click\x1b]8;;\x07\x1b[2J\x07\r"
HOSTILE_SCENARIO = "\x1b[31mRefund request\x1b[0m"
HOSTILE_QUESTION = "Does it \x9b2Jstay \u202epolite\u202c?\x00"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (HOSTILE_CRITIQUE, "click"),  # hyperlink to a hidden target, clear screen, bell, carriage return
        (HOSTILE_SCENARIO, "Refund request"),
        (HOSTILE_QUESTION, "Does it stay polite?"),  # 8-bit CSI, a right-to-left override, NUL
        ("\x1b]0;new window title\x1b\\after", "after"),  # OSC ended by ST
        ("\x9d0;title\x9cafter", "after"),  # the same in 8-bit form
        ("\x1bP1$r0m\x1b\\x", "x"),  # DCS
        ("\x1b7saved\x1b8 \x1b(0line\x1b(B \x1bc", "saved line "),  # two-character escapes, charset, reset
        ("\x1b[38;2;255;0;0mtrue colour\x1b[m\x1b[?1049h", "true colour"),
        ("cursor\x1b[10A\x1b[Kup", "cursorup"),
        ("\x1b]8;;unterminated link", "8;;unterminated link"),  # no terminator: the text stays visible
        ("bare \x1b", "bare "),
        ("back\x08\x08space\x7f", "backspace"),
        ("tab\tand\nnewline stay", "tab\tand\nnewline stay"),
        ("windows\r\nline", "windows\nline"),
        ("naïve — “quoted” 😀 日本語 [bold]x[/]", "naïve — “quoted” 😀 日本語 [bold]x[/]"),  # markup is rich's job
        ("", ""),
    ],
)
def test_terminal_safe(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown
    assert terminal_safe(shown) == shown


def test_nothing_unsafe_survives_any_mix() -> None:
    pieces = [HOSTILE_CRITIQUE, HOSTILE_SCENARIO, HOSTILE_QUESTION, "\x1b", "[", "]", "\x07", "\x9c", "ok", "\\"]
    for first in pieces:
        for second in pieces:
            for third in pieces:
                assert not UNSAFE.search(terminal_safe(first + second + third))


@pytest.fixture
def hostile_out(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> Path:
    session_id = piper.dataset.session_ids[0]
    piper.dataset.set_payload(session_id, {
        "id": "run-hostile", "scenario_id": "sc-hostile", "scenario_name": HOSTILE_SCENARIO, "status": "failed",
        "started_at": "2026-10-07T06:00:00Z", "completed_at": "2026-10-07T06:01:00Z",
        "turn_results": [{"id": "turn-1", "turn_index": 0, "passed": False, "response_content": "\x1b[2J reply",
                          "criteria_results": [{"id": "crit-1", "criteria_id": "c-1", "verdict": "FAIL",
                                                "criteria_question": HOSTILE_QUESTION,
                                                "critique": HOSTILE_CRITIQUE, "evidence": "\x1b[5mblink"}]}],
    })
    assert cli(*load_args(piper, out_dir, session_id)).code == 0
    return out_dir


def test_the_report_prints_no_escape_sequence(hostile_out: Path, cli: Cli) -> None:
    result = cli("report", "--out", str(hostile_out))
    assert result.code == 0, result.stderr
    assert not UNSAFE.search(result.stdout)
    printed = " ".join(result.stdout.split())
    assert "Refund request" in printed and "click" in printed and "Does it stay polite?" in printed


def test_sql_tables_print_no_escape_sequence(hostile_out: Path, cli: Cli) -> None:
    result = cli("sql", "--out", str(hostile_out), 'SELECT scenario_name AS "\x1b[1mname", critique, evidence, '
                 "response_content FROM failures")
    assert result.code == 0, result.stderr
    assert not UNSAFE.search(result.stdout)
    assert "Refund request" in result.stdout and "click" in result.stdout and "blink" in result.stdout


def test_sql_errors_that_quote_the_data_print_no_escape_sequence(hostile_out: Path, cli: Cli) -> None:
    result = cli("sql", "--out", str(hostile_out), "SELECT CAST(scenario_name AS INTEGER) FROM runs")
    assert result.code == 1
    reading, error = result.stderr.split("\n", 1)
    assert reading.startswith("piper-etl sql: reading ")
    assert error.startswith("piper-etl sql: error: Conversion Error") and "Refund request" in error
    assert not UNSAFE.search(error.removesuffix("\n"))


def test_csv_to_a_file_or_pipe_is_faithful(hostile_out: Path, cli: Cli) -> None:
    result = cli("sql", "--out", str(hostile_out), "--csv", "SELECT scenario_name, critique FROM failures")
    assert result.code == 0
    assert result.stdout == f'scenario_name,critique\n"{HOSTILE_SCENARIO}","{HOSTILE_CRITIQUE}"\n'
    # The critique's bare "\r" gets its row quoted, so CSV readers do not take it for a line end.
    assert list(csv.reader(io.StringIO(result.stdout, newline=""))) == [
        ["scenario_name", "critique"], [HOSTILE_SCENARIO, HOSTILE_CRITIQUE]]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_csv_to_a_terminal_is_cleaned(hostile_out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PIPER_PRICING_FILE", "PIPER_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    args = build_parser().parse_args(["sql", "--out", str(hostile_out), "--csv",
                                      "SELECT scenario_name, critique, 42 AS n FROM failures"])
    terminal = Terminal()
    assert run(args, io.StringIO(), terminal) == 0
    assert terminal.getvalue() == "scenario_name,critique,n\nRefund request,click,42\n"
