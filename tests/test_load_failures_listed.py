"""After a load: the first failures, how many more there are and the query that lists them all; 404 hints."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.cli import more_failures
from flows.pipeline import LoadSummary
from tests.conftest import Cli, SimulatedPiper, load_args

LISTED = re.compile(r"^  '(.*)': (.*)$")


def load_id_of(stdout: str) -> str:
    return stdout.split()[1]


def test_more_failures_than_listed_says_how_many_and_where(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    bad = [f"bad\x01{n}" for n in range(8)]
    result = cli(*load_args(piper, out_dir, *piper.dataset.session_ids[:2], *bad))
    assert result.code == 1
    *listed, more = result.stderr.splitlines()
    assert len(listed) == 5 and all(LISTED.match(line) for line in listed)
    query = (
        f"SELECT session_id, outcome, error FROM fetch_log WHERE load_id = '{load_id_of(result.stdout)}' "
        "AND outcome IN ('failed', 'rejected')"
    )
    assert more == f"  ... and 3 more failed or rejected sessions: piper-etl sql --out {out_dir} \"{query}\""

    command = shlex.split(more.split(": ", 1)[1])
    assert command[:2] == ["piper-etl", "sql"]
    listing = cli(*command[1:], "--csv")
    assert listing.code == 0
    assert sorted(listing.stdout.splitlines()[1:]) == sorted(
        f"{session_id},rejected,session id contains the control character '\\x01'" for session_id in bad
    )


def test_when_the_load_stopped_the_count_includes_the_sessions_never_sent(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPER_API_TOKEN", "pat_not_the_right_one")
    ids = piper.dataset.session_ids
    result = cli(*load_args(piper, out_dir, "--concurrency", "2", *ids))
    assert result.code == 3
    more, stopped = result.stderr.splitlines()  # every session failed for one reason: none is listed
    query = (
        f"SELECT session_id, outcome, error FROM fetch_log WHERE load_id = '{load_id_of(result.stdout)}' "
        "AND outcome IN ('failed', 'rejected')"
    )
    assert more == (
        f"  {len(ids)} failed or rejected sessions (including those never sent after the load stopped): "
        f"piper-etl sql --out {out_dir} \"{query}\""
    )
    assert stopped.startswith("piper-etl load: the Piper API refused the API token (HTTP 401)")


def test_no_more_line_when_every_failure_is_listed(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    result = cli(*load_args(piper, out_dir, piper.dataset.session_ids[0], "bad\x01id"))
    assert result.code == 1
    assert result.stderr == "  'bad\\x01id': session id contains the control character '\\x01'\n"


def summary(outcomes: dict[str, int], failures: list[tuple[str, str]], stop: str | None = None) -> LoadSummary:
    now = datetime(2026, 11, 2, tzinfo=UTC)
    return LoadSummary(load_id="L1", status="aborted" if stop else "partial", out_dir=Path("my out"),
                       outcomes=Counter(outcomes), rows=Counter(), started_at=now, finished_at=now,
                       stop_message=stop, failures=failures)


def test_the_line_reads_right_for_one_and_for_none_listed() -> None:
    query = (
        "\"SELECT session_id, outcome, error FROM fetch_log WHERE load_id = 'L1' "
        "AND outcome IN ('failed', 'rejected')\""
    )
    assert more_failures(summary({"failed": 2}, [("s1", "HTTP 503")])) == (
        f"  ... and 1 more failed or rejected session: piper-etl sql --out 'my out' {query}"
    )
    assert more_failures(summary({"failed": 4}, [], stop="the Piper API refused the API token")) == (
        "  4 failed or rejected sessions (including those never sent after the load stopped): "
        f"piper-etl sql --out 'my out' {query}"
    )
    assert more_failures(summary({"loaded": 3, "rejected": 1}, [("s1", "bad")])) is None


def test_one_session_not_found_names_the_org_id_and_the_base_url(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    result = cli(*load_args(piper, out_dir, "no-such-session"))
    assert result.code == 0
    assert result.stderr == (
        f"piper-etl load: warning: the one session fetched was not found (404): the org id "
        f"'{piper.org_id}' or the base URL '{piper.base_url}' is probably wrong\n"
    )


def test_some_found_is_no_hint(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    result = cli(*load_args(piper, out_dir, "no-such-session", piper.dataset.session_ids[0]))
    assert (result.code, result.stderr) == (0, "")
