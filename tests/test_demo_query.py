"""The demo's printed example query works when pasted into a shell, and reads the snapshot, not the writer's file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.demo import example_query
from tests.conftest import Cli, SimulatedPiper, load_args
from warehouse import store


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash, the shell the line is printed for")
def test_the_printed_query_runs_in_bash_while_a_load_holds_the_database(
    piper: SimulatedPiper, tmp_path: Path, cli: Cli
) -> None:
    out_dir = tmp_path / "it's a \"demo\" $HOME"  # quotes and a dollar: the shell must take the path as it is
    assert cli(*load_args(piper, out_dir, *piper.dataset.session_ids)).code == 0
    line = example_query(out_dir)
    assert "\n" not in line and line.startswith("python3 -c ")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    writer = store.connect(out_dir / store.DATABASE_FILE)  # as a load that is merging: piper.duckdb is locked
    try:
        done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, timeout=120)
        names = [row[0] for row in writer.execute("SELECT scenario_name FROM scenario_summary").fetchall()]
    finally:
        writer.close()
    assert done.returncode == 0, done.stderr
    assert "pass_rate" in done.stdout and names and all(name in done.stdout for name in names[:3])
