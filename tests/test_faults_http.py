"""HTTP-level faults over the simulated API, end to end through the CLI: retried, reported, never leaked."""

from __future__ import annotations

import time
from email.utils import formatdate
from pathlib import Path

import pytest

from tests import faultserver as fs
from tests.conftest import Cli, SimulatedPiper, assert_no_canary, load_args, query


@pytest.mark.parametrize("status", ["500", "502", "503", "504", "429"])
def test_each_retryable_status_is_retried_and_loaded(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, status: str
) -> None:
    sid = piper.dataset.session_ids[0]
    piper.state.script(sid, status, status)
    result = cli(*load_args(piper, out_dir, sid))
    assert result.code == 0, result.stderr
    assert query(out_dir, "SELECT outcome, attempts FROM fetch_log")[0] == ("loaded", 3)
    assert_no_canary(result.stdout, result.stderr, folder=out_dir)


def test_retry_after_as_an_http_date_is_honoured(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    sid = piper.dataset.session_ids[0]
    piper.state.retry_after = formatdate(time.time() + 2, usegmt=True)
    piper.state.script(sid, "429")
    started = time.monotonic()
    result = cli(*load_args(piper, out_dir, sid))
    assert result.code == 0, result.stderr
    assert time.monotonic() - started >= 0.9, "waited for the date the server named"
    assert query(out_dir, "SELECT outcome, attempts FROM fetch_log")[0] == ("loaded", 2)


def test_unreachable_api_stops_early_with_one_message(out_dir: Path, cli: Cli) -> None:
    base_url = f"http://127.0.0.1:{fs.closed_port()}"
    ids = [f"s-{i}" for i in range(100)]
    started = time.monotonic()
    result = cli("load", "--org-id", "org", "--base-url", base_url, "--out", str(out_dir), *ids)
    assert time.monotonic() - started < 30
    assert result.code == 1
    assert result.stderr.count(f"cannot connect to the Piper API at {base_url}") == 1
    assert query(out_dir, "SELECT count(*), count(*) FILTER (outcome = 'failed') FROM fetch_log")[0] == (100, 100)
    assert query(out_dir, "SELECT status FROM loads")[0][0] == "aborted"
    assert_no_canary(result.stdout, result.stderr, folder=out_dir)


def test_all_sessions_not_found_points_at_the_org_or_base_url(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    args = load_args(piper, out_dir, *piper.dataset.session_ids[:5])
    args[args.index("--org-id") + 1] = "0f8fad5b-0000-0000-0000-000000000000"
    result = cli(*args)
    assert result.code == 0
    assert "every one of the 5 sessions fetched was not found (404)" in result.stderr
    assert "org id '0f8fad5b-0000-0000-0000-000000000000'" in result.stderr
