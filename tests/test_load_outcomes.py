"""Every requested session ends in fetch_log with a truthful outcome, and the exit status says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli, SimulatedPiper, load_args, query


def outcomes(out_dir: Path) -> dict[str, tuple[str, int | None, int, str | None]]:
    rows = query(out_dir, "SELECT session_id, outcome, http_status, attempts, error FROM fetch_log")
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def test_unknown_sessions_are_not_found_and_exit_zero(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    known = piper.dataset.session_ids[:3]
    result = cli(*load_args(piper, out_dir, *known, "nope-1", "nope-2"))
    assert result.code == 0, result.stderr
    log = outcomes(out_dir)
    expected = {**dict.fromkeys(known, "loaded"), "nope-1": "not_found", "nope-2": "not_found"}
    assert {sid: log[sid][0] for sid in log} == expected
    assert log["nope-1"][1:3] == (404, 1)
    assert "2 not found" in result.stdout


@pytest.mark.parametrize("faults", [("429",), ("503",), ("truncate",), ("502", "429", "html")])
def test_transient_faults_are_retried_and_end_loaded(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, faults: tuple[str, ...]
) -> None:
    sid = piper.dataset.session_ids[0]
    piper.state.script(sid, *faults)
    result = cli(*load_args(piper, out_dir, sid))
    assert result.code == 0, result.stderr
    assert outcomes(out_dir)[sid][:3] == ("loaded", 200, len(faults) + 1)
    assert query(out_dir, "SELECT count(*) FROM runs WHERE session_id = ?", [sid])[0][0] == 1


def test_exhausted_retries_fail_the_session_and_exit_one(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    bad, good = piper.dataset.session_ids[:2]
    piper.state.script(bad, "503", "503", "503")
    result = cli(*load_args(piper, out_dir, "--max-retries", "2", bad, good))
    assert result.code == 1
    log = outcomes(out_dir)
    assert log[bad] == ("failed", 503, 3, "HTTP 503; gave up after 3 attempts")
    assert log[good][0] == "loaded"
    assert "1 failed" in result.stdout and bad in result.stderr
    assert query(out_dir, "SELECT status, sessions_failed, sessions_loaded FROM loads")[0] == ("partial", 1, 1)


def test_bad_payload_is_rejected_and_kept_raw(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    piper.dataset.add_session("web-bad-payload")
    piper.dataset.set_payload("web-bad-payload", {"id": "run-x", "turn_results": "not a list"})
    result = cli(*load_args(piper, out_dir, "web-bad-payload", piper.dataset.session_ids[0]))
    assert result.code == 1
    outcome, status, _, error = outcomes(out_dir)["web-bad-payload"]
    assert (outcome, status) == ("rejected", 200) and error is not None and "turn_results" in error
    (reason, body) = query(out_dir, "SELECT reason, body FROM rejected_payloads")[0]
    assert "turn_results" in reason and '"not a list"' in body
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 1


def test_unsafe_ids_are_rejected_before_any_request(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    result = cli(*load_args(piper, out_dir, "..", piper.dataset.session_ids[0]))
    assert result.code == 1
    assert outcomes(out_dir)[".."][:3] == ("rejected", None, 0)
    assert all(r.session_id != ".." for r in piper.state.requests)


def test_every_requested_session_is_in_the_fetch_log(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    ids = [*piper.dataset.session_ids, "missing-a", "..", "missing-b"]
    cli(*load_args(piper, out_dir, "--chunk-size", "7", *ids))
    assert set(outcomes(out_dir)) == set(ids)
    requested, loaded = query(out_dir, "SELECT sessions_requested, sessions_loaded FROM loads")[0]
    assert requested == len(ids) and loaded == len(piper.dataset.session_ids)
