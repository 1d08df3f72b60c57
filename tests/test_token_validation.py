"""A token that cannot travel in an HTTP header is a usage error before any request, and is never quoted."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.client import PiperClient
from connector.errors import PiperConfigError
from tests.conftest import CANARY_TOKEN, ORG_ID, Cli, SimulatedPiper, load_args

HEAD, TAIL = CANARY_TOKEN[:12], CANARY_TOKEN[12:]
BAD_TOKENS = {
    "space": (f"{HEAD} {TAIL}", "white space"),
    "tab": (f"{HEAD}\t{TAIL}", "white space"),
    "line-break": (f"{HEAD}\n{TAIL}", "white space"),
    "nul": (f"{HEAD}\x00{TAIL}", "control character"),
    "escape": (f"{HEAD}\x1b[2J{TAIL}", "control character"),
    "delete": (f"{HEAD}\x7f{TAIL}", "control character"),
    "c1-control": (f"{HEAD}\x85{TAIL}", "white space"),  # NEL: str.isspace() says white space
    "non-ascii": (f"{HEAD}é{TAIL}", "non-ASCII character"),
    "no-break-space": (f"{HEAD}\u00a0{TAIL}", "white space"),
    "zero-width-space": (f"{HEAD}\u200b{TAIL}", "non-ASCII character"),
    "smart-quote": (f"\u201c{CANARY_TOKEN}\u201d", "non-ASCII character"),
}


def assert_no_part_of_the_token(*texts: str) -> None:
    for text in texts:
        for part in (CANARY_TOKEN, HEAD, TAIL, "CANARY"):
            assert part not in text, f"part of the token {part!r} is quoted in {text!r}"


@pytest.mark.parametrize(("token", "problem"), BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_unusable_token_is_a_config_error_naming_the_problem(token: str, problem: str) -> None:
    with pytest.raises(PiperConfigError) as raised:
        PiperClient(base_url="https://piper.test", org_id=ORG_ID, token=token)
    message = str(raised.value)
    assert problem in message and "PIPER_API_TOKEN" in message
    assert_no_part_of_the_token(message, repr(raised.value))


@pytest.mark.parametrize("token", [f"  {CANARY_TOKEN}\n", f"\t{CANARY_TOKEN}\r\n"], ids=["spaces", "crlf"])
def test_white_space_around_the_token_is_stripped(token: str) -> None:
    PiperClient(base_url="https://piper.test", org_id=ORG_ID, token=token)


def test_only_white_space_is_no_token() -> None:
    with pytest.raises(PiperConfigError, match="no API token"):
        PiperClient(base_url="https://piper.test", org_id=ORG_ID, token=" \n\t ")


IN_ENVIRONMENT = {name: case for name, case in BAD_TOKENS.items() if "\x00" not in case[0]}  # no NUL in os.environ


@pytest.mark.parametrize(("token", "problem"), IN_ENVIRONMENT.values(), ids=IN_ENVIRONMENT.keys())
def test_load_with_an_unusable_token_exits_2_before_any_request(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, token: str, problem: str
) -> None:
    monkeypatch.setenv("PIPER_API_TOKEN", token)
    result = cli(*load_args(piper, out_dir, *piper.dataset.session_ids[:3]))
    assert result.code == 2
    assert problem in result.stderr and "PIPER_API_TOKEN" in result.stderr
    assert piper.state.requests == [], "no request reached the API"
    assert_no_part_of_the_token(result.stdout, result.stderr)
