"""A load against an API that answers only errors stops early, records every session, commits, and exits 1."""

from __future__ import annotations

from pathlib import Path

from connector.fake_api import FakePiper, serve
from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, query


def test_an_api_answering_only_errors_trips_the_breaker_and_the_load_commits(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    failing = FakePiper(dataset=piper.dataset, token=CANARY_TOKEN, retry_after="0", error_rate=1.0)
    ids = piper.dataset.session_ids
    with serve(failing) as base_url:
        result = cli("load", "--org-id", piper.org_id, "--base-url", base_url, "--out", str(out_dir),
                     "--concurrency", "2", "--max-consecutive-failures", "6", "--circuit-breaker-seconds", "0", *ids)
    assert result.code == 1, result.stderr
    assert "--max-consecutive-failures" in result.stderr, "the message says how to change the rule"
    assert len(failing.requests) < 6 + 2 * 2, "it stopped soon after the sixth failure in a row"
    assert query(out_dir, "SELECT outcome, count(*) FROM fetch_log GROUP BY 1") == [("failed", len(ids))]
    assert query(out_dir, "SELECT status, sessions_failed FROM loads") == [("aborted", len(ids))]
