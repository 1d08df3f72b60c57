"""`piper-etl save-token`: the token from a prompt or stdin, checked, never echoed; a server it can reach.

Saving the block for real, twice, against a Prefect server is in tests/test_deployment_real.py.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
from pathlib import Path

import pytest

from flows.errors import UsageError
from flows.token_block import read_token
from tests.conftest import CANARY_TOKEN, assert_no_canary
from tests.test_cli_anticipated_failures import PIPER_ETL


def test_the_token_is_read_from_stdin_and_stripped() -> None:
    assert read_token(io.StringIO(f"  {CANARY_TOKEN}  \nsecond line\n")) == CANARY_TOKEN


@pytest.mark.parametrize(("typed", "problem"), [
    ("\n", "no token given: type it at the prompt, or pipe it on stdin"),
    (f"{CANARY_TOKEN[:6]} {CANARY_TOKEN[6:]}\n",
     "the token has white space inside (character 7); give it exactly as issued"),
    (f"{CANARY_TOKEN}\x07\n",
     f"the token has a control character (character {len(CANARY_TOKEN) + 1}); give it exactly as issued"),
])
def test_an_unusable_token_is_a_usage_error_that_does_not_quote_it(typed: str, problem: str) -> None:
    with pytest.raises(UsageError) as raised:
        read_token(io.StringIO(typed))
    assert str(raised.value) == problem
    assert_no_canary(str(raised.value), CANARY_TOKEN[6:])


def save_token(tmp_path: Path, **env: str) -> tuple[int, str, str]:
    """`piper-etl save-token` in a fresh process and PREFECT_HOME, the canary token on stdin."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIPER_", "PREFECT_"))}
    done = subprocess.run(
        [PIPER_ETL, "save-token"], input=CANARY_TOKEN + "\n", capture_output=True, text=True, timeout=120,
        env={**clean, "PREFECT_HOME": str(tmp_path / "prefect"), **env}, check=False,
    )
    assert_no_canary(done.stdout, done.stderr)
    return done.returncode, done.stdout, done.stderr


def test_without_a_prefect_server_configured_nothing_is_saved(tmp_path: Path) -> None:
    code, _, stderr = save_token(tmp_path)
    assert code == 2
    assert stderr == (
        "piper-etl save-token: error: no Prefect server: set PREFECT_API_URL (or `prefect config set "
        "PREFECT_API_URL=...`) to the server your workers use\n"
    )


def test_a_prefect_server_that_does_not_answer_is_exit_status_4(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        api_url = f"http://127.0.0.1:{probe.getsockname()[1]}/api"  # nothing listens there
    code, _, stderr = save_token(tmp_path, PREFECT_API_URL=api_url)
    assert code == 4
    assert stderr.startswith(f"piper-etl save-token: error: cannot reach the Prefect server at {api_url}")
    assert "Traceback" not in stderr
