"""A refused token stops the load at once (exit 3), keeps what was fetched, and never leaks the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, assert_no_canary, load_args, query


def test_wrong_token_exits_3_and_token_appears_nowhere(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    piper.state.token = "pat_the_server_expects_another"
    result = cli(*load_args(piper, out_dir, *piper.dataset.session_ids))
    assert result.code == 3
    assert "PIPER_API_TOKEN" in result.stderr and "HTTP 401" in result.stderr
    assert len(piper.state.requests) <= 16, "no new requests after the refusal"
    assert query(out_dir, "SELECT status FROM loads")[0][0] == "aborted"
    assert query(out_dir, "SELECT count(*) FROM fetch_log")[0][0] == len(piper.dataset.session_ids)
    assert_no_canary(result.stdout, result.stderr, folder=out_dir)


@pytest.mark.parametrize("status", ["401", "403"])
def test_refusal_mid_load_keeps_what_was_fetched(piper: SimulatedPiper, out_dir: Path, cli: Cli, status: str) -> None:
    ids = piper.dataset.session_ids[:12]
    piper.state.script(ids[5], status)
    result = cli(*load_args(piper, out_dir, "--concurrency", "1", "--chunk-size", "4", *ids))
    assert result.code == 3
    log = dict(query(out_dir, "SELECT session_id, outcome FROM fetch_log"))
    assert [log[s] for s in ids[:5]] == ["loaded"] * 5
    assert [log[s] for s in ids[5:]] == ["failed"] * 7
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 5
    assert [r.session_id for r in piper.state.requests] == ids[:6], "nothing sent after the refusal"
    errors = [row[0] for row in query(out_dir, "SELECT error FROM fetch_log WHERE outcome = 'failed'")]
    assert all(f"HTTP {status}" in e for e in errors)
    assert_no_canary(result.stdout, result.stderr, folder=out_dir)


def test_token_never_written_on_a_normal_load(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    piper.state.script(piper.dataset.session_ids[0], "503", "html")
    result = cli(*load_args(piper, out_dir, *piper.dataset.session_ids, "unknown-session"))
    assert result.code == 0
    assert_no_canary(result.stdout, result.stderr, folder=out_dir)
    assert CANARY_TOKEN not in repr(query(out_dir, "SELECT * FROM loads"))
