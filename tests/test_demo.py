"""`piper-etl demo` and `piper-etl fake-api`: what a new user runs first."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from connector.fake_api import FakeDataset
from flows.demo import example_query, run_demo
from tests.conftest import query


def test_demo_loads_twice_and_prints_its_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "demo"
    assert run_demo(sessions=40, out_dir=out_dir, seed=5) == 0
    printed = capsys.readouterr().out
    assert "first load: 40 loaded" in printed and "2 not found" in printed
    assert "second load, after the pending runs finished" in printed and "skipped (already final)" in printed
    for heading in ("Runs by status", "Judged criteria by verdict", "judge input tokens", "piper.duckdb", "SELECT"):
        assert heading in printed
    assert example_query(out_dir) in printed, "the example query as tests/test_demo_query.py runs it"
    assert "sync, after 3 new sessions and 2 re-runs: listed 47 sessions in 1 pages" in printed
    # updated: the 2 re-runs, and the runs the second load stored final but whose session moved when they finished
    queued = re.search(r"queued (\d+) \(3 new, 0 unfinished, (\d+) updated\): (\d+) loaded, 0 failed", printed)
    assert queued and int(queued[2]) >= 2 and queued[1] == queued[3]
    assert "sync again, nothing new: listed 47 sessions in 1 pages" in printed and "queued 0 (0 new" in printed
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 43, "a re-run replaces its session's run"
    assert query(out_dir, "SELECT count(*) FROM runs WHERE status IN ('pending', 'running')")[0][0] == 0
    assert query(out_dir, "SELECT count(*) FROM loads")[0][0] == 4
    assert query(out_dir, "SELECT count(*) FROM sync_state")[0][0] == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_fake_api_command_serves_the_contract(tmp_path: Path) -> None:
    port = free_port()
    ids_file = tmp_path / "ids.txt"
    env = {**os.environ, "PIPER_API_TOKEN": "pat_test_fake_api"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "fake-api", "--port", str(port), "--sessions", "5", "--seed", "2",
         "--sessions-out", str(ids_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        dataset = FakeDataset.generate(seed=2, sessions=5)
        url = f"http://127.0.0.1:{port}/v1/orgs/{dataset.org_id}/scenarios/runs/by-session/"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(url + "unknown", headers={"Authorization": "Bearer pat_test_fake_api"})
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.status_code == 404
        assert ids_file.read_text(encoding="utf-8").split("\n")[:5] == dataset.session_ids
        auth = {"Authorization": "Bearer pat_test_fake_api"}
        first = httpx.get(url + quote(dataset.session_ids[0], safe=""), headers=auth)
        assert first.status_code == 200 and first.json()["id"]
        assert httpx.get(url + "x", headers={"Authorization": "Bearer wrong"}).status_code == 401
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in err.decode()
