"""Session ids whose bytes are not UTF-8 (argv, a file, stdin) are rejected with their bytes; the rest loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector.urls import printable_session_id, session_id_problem
from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, assert_no_canary, load_args, query

PIPER_ETL = Path(sys.executable).with_name("piper-etl")


def fetch_log(out_dir: Path) -> dict[str, tuple[str, str | None]]:
    rows = query(out_dir, "SELECT session_id, outcome, error FROM fetch_log")
    return {session_id: (outcome, error) for session_id, outcome, error in rows}


@pytest.mark.parametrize(
    ("raw", "problem", "printable"),
    [
        (b"web-\xff", "session id is not valid UTF-8: b'web-\\xff'", "web-\\xff"),
        (b"\xfe\xffx", "session id is not valid UTF-8: b'\\xfe\\xffx'", "\\xfe\\xffx"),
        (b"caf\xc3\xa9", None, "caf\u00e9"),  # valid UTF-8 stays as it is
    ],
)
def test_undecodable_bytes_are_the_reason_and_stay_visible(raw: bytes, problem: str | None, printable: str) -> None:
    session_id = raw.decode("utf-8", errors="surrogateescape")  # what argv, the file and stdin give
    assert session_id_problem(session_id) == problem
    assert printable_session_id(session_id) == printable


def test_a_lone_surrogate_from_elsewhere_is_not_valid_utf8_either() -> None:
    assert session_id_problem("a\ud800") == "session id is not valid UTF-8: b'a\\xed\\xa0\\x80'"
    assert printable_session_id("a\ud800") == "a\\xed\\xa0\\x80"


def test_argv_ids_are_stripped_and_undecodable_ones_rejected(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    good = piper.dataset.session_ids[0]
    result = cli(*load_args(piper, out_dir, f"  {good}\t", os.fsdecode(b"web-\xff")))
    assert result.code == 1
    assert result.stderr == "  'web-\\udcff': session id is not valid UTF-8: b'web-\\xff'\n"
    assert "1 loaded" in result.stdout and "1 rejected" in result.stdout
    assert fetch_log(out_dir) == {
        good: ("loaded", None),
        "web-\\xff": ("rejected", "session id is not valid UTF-8: b'web-\\xff'"),
    }


def test_a_sessions_file_with_bytes_that_are_not_utf8(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    first, second = piper.dataset.session_ids[:2]
    ids_file = tmp_path / "ids.txt"
    # a byte order mark (Windows editors write one), CRLF line ends, one line that is not UTF-8
    ids_file.write_bytes(b"\xef\xbb\xbf" + first.encode() + b"\r\nsms-\xfe\xff\r\n  " + second.encode() + b"\r\n")
    result = cli(*load_args(piper, out_dir, "--sessions-file", str(ids_file)))
    assert result.code == 1
    assert result.stderr == "  'sms-\\udcfe\\udcff': session id is not valid UTF-8: b'sms-\\xfe\\xff'\n"
    assert fetch_log(out_dir) == {
        first: ("loaded", None),
        second: ("loaded", None),
        "sms-\\xfe\\xff": ("rejected", "session id is not valid UTF-8: b'sms-\\xfe\\xff'"),
    }


def test_real_argv_and_stdin_bytes(piper: SimulatedPiper, out_dir: Path) -> None:
    first, second = piper.dataset.session_ids[:2]
    argv = [os.fsencode(PIPER_ETL), *(arg.encode() for arg in load_args(piper, out_dir, "--sessions-file", "-")),
            first.encode(), b"argv-\xff"]
    env = {**os.environ, "PIPER_API_TOKEN": CANARY_TOKEN}
    done = subprocess.run(argv, input=second.encode() + b"\nstdin-\x80\n", env=env, capture_output=True,
                          timeout=120, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert sorted(stderr.splitlines()) == [
        "  'argv-\\udcff': session id is not valid UTF-8: b'argv-\\xff'",
        "  'stdin-\\udc80': session id is not valid UTF-8: b'stdin-\\x80'",
    ]
    assert "Traceback" not in stderr
    assert_no_canary(done.stdout, done.stderr, folder=out_dir)
    assert fetch_log(out_dir) == {
        first: ("loaded", None),
        second: ("loaded", None),
        "argv-\\xff": ("rejected", "session id is not valid UTF-8: b'argv-\\xff'"),
        "stdin-\\x80": ("rejected", "session id is not valid UTF-8: b'stdin-\\x80'"),
    }


def test_the_prefect_engine_refuses_them_before_creating_a_flow_run(cli: Cli, out_dir: Path) -> None:
    result = cli("load", "--engine", "prefect", "--org-id", "org", "--out", str(out_dir), "s-1", os.fsdecode(b"w\xff"))
    assert result.code == 2
    assert result.stderr == (
        "piper-etl load: error: session id b'w\\xff' is not valid UTF-8, and a Prefect flow takes only text "
        "parameters: fix or drop it, or load with --engine local, which records it rejected and loads the rest\n"
    )
    assert not out_dir.exists()
