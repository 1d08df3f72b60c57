"""`piper-etl sync` on the command line: its help, and the exit status of a listing that fails."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Cli, SimulatedPiper, assert_no_canary, query
from tests.sync_support import org, sync_args

__all__ = ["org"]


def test_sync_help_names_its_options_and_the_flow(cli: Cli) -> None:
    result = cli("sync", "--help")
    assert result.code == 0
    text = " ".join(result.stdout.split())
    for option in ("--since ISO", "--until ISO", "--full-scan", "--dry-run", "--out DIR", "--max-retries",
                   "--pricing", "sync_sessions flow"):
        assert option in text, option


def test_a_wrong_org_fails_at_the_first_page_and_loads_nothing(org: SimulatedPiper, cli: Cli, out_dir: Path) -> None:
    args = sync_args(org, out_dir)
    args[args.index("--org-id") + 1] = "not-this-org"
    result = cli(*args)
    assert result.code == 1
    assert "piper-etl sync: error: cannot read the sessions list page (offset 0, limit 500): HTTP 404" in result.stderr
    assert "check the org id 'not-this-org'" in result.stderr
    assert not [r for r in org.state.requests if r.session_id is not None]
    assert not list(out_dir.rglob("*.parquet")), "nothing landed, nothing committed"


def test_a_refused_token_on_the_list_exits_3_and_never_leaks(org: SimulatedPiper, cli: Cli, out_dir: Path) -> None:
    org.state.token = "pat_another_token"
    result = cli(*sync_args(org, out_dir))
    assert result.code == 3 and "refused the API token" in result.stderr
    assert_no_canary(result.stdout, result.stderr, folder=out_dir)


def test_a_list_page_is_retried_like_a_fetch(org: SimulatedPiper, cli: Cli, out_dir: Path) -> None:
    org.state.error_rate = 0.5  # half the requests fail: list pages and fetches are retried alike
    org.state.fault_seed = next(seed for seed in range(100) if _first_list_request_fails(org, seed))
    result = cli(*sync_args(org, out_dir, "--max-retries", "8"))
    assert result.code == 0, result.stderr
    pages = [r for r in org.state.requests if r.raw_path.endswith("/sessions/")]
    assert pages[0].fault is not None and pages[-1].status == 200
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == 60


def _first_list_request_fails(piper: SimulatedPiper, seed: int) -> bool:
    import random

    path = f"/v1/orgs/{piper.org_id}/sessions/"
    return random.Random(f"{seed}:{path}:1").random() < 0.5
