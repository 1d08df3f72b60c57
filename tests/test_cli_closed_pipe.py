"""`piper-etl report | head -1` and `piper-etl sql ... | head -1`: a reader that stops early is no failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, load_args

PIPER_ETL = str(Path(sys.executable).with_name("piper-etl"))


@pytest.fixture
def loaded(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> Path:
    assert cli(*load_args(piper, out_dir, *piper.dataset.session_ids)).code == 0
    return out_dir


def into_closed_pipe(*args: str, lines_read: int) -> tuple[int, str, list[bytes]]:
    """Run piper-etl with stdout into a pipe whose reader closes it after `lines_read` lines, as `head` does."""
    env = {**os.environ, "PIPER_API_TOKEN": CANARY_TOKEN}
    with subprocess.Popen([PIPER_ETL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        read = [proc.stdout.readline() for _ in range(lines_read)]
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    return code, stderr, read


@pytest.mark.parametrize("lines_read", [0, 1])
@pytest.mark.parametrize(
    "command",
    [
        ["report"],
        ["sql", "SELECT * FROM runs"],
        ["sql", "--csv", "SELECT * FROM range(200000)"],  # more than a pipe buffer holds
    ],
    ids=["report", "sql", "sql-csv"],
)
def test_a_closed_pipe_ends_the_command_quietly(loaded: Path, command: list[str], lines_read: int) -> None:
    code, stderr, read = into_closed_pipe(command[0], "--out", str(loaded), *command[1:], lines_read=lines_read)
    reading = f"piper-etl {command[0]}: reading {loaded / 'parquet'} (current state of the Parquet files)\n"
    assert (code, stderr) == (0, reading), "no error, only the line naming the store read"
    assert all(line.endswith(b"\n") for line in read)


def test_a_load_into_a_closed_pipe_keeps_its_exit_status(piper: SimulatedPiper, out_dir: Path) -> None:
    code, stderr, _ = into_closed_pipe(*load_args(piper, out_dir, "bad\x01id", piper.dataset.session_ids[0]),
                                       lines_read=0)
    assert code == 1, "the rejected session still fails the load"
    assert stderr == "  'bad\\x01id': session id contains the control character '\\x01'\n"
