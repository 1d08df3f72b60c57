"""A server echoing the Authorization header back never gets the token into anything the tool writes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest

from connector.body import TokenRedactor
from connector.client import FetchResult, PiperClient
from connector.fake_api import FakeDataset, FakePiper, serve
from connector.retry import RetryPolicy
from tests.conftest import CANARY_TOKEN, ORG_ID, Cli, assert_no_canary, query

Handler = Callable[[httpx.Request], httpx.Response]
ECHOED = f"Bearer {CANARY_TOKEN}"


def fetch_one(handler: Handler, *, token: str = CANARY_TOKEN, max_retries: int = 0) -> FetchResult:
    async def no_sleep(seconds: float) -> None:
        return None

    async def go() -> FetchResult:
        async with PiperClient(
            base_url="https://piper.test", org_id=ORG_ID, token=token, transport=httpx.MockTransport(handler),
            retry=RetryPolicy(max_retries=max_retries), sleep=no_sleep, rng=random.Random(0),
        ) as client:
            (result,) = (await client.fetch_many(["s-1"])).results
            return result

    return asyncio.run(go())


def assert_result_clean(result: FetchResult, token: str = CANARY_TOKEN) -> None:
    for text in (repr(result), orjson.dumps(result.payload).decode(), (result.body or b"").decode("utf-8", "replace")):
        assert token not in text, f"the token leaked into {text[:300]!r}"


def echo_json(status: int, make: Callable[[str], object]) -> Handler:
    """A server answering `status` with a JSON body built from the Authorization header it received."""
    return lambda request: httpx.Response(status, content=orjson.dumps(make(request.headers["authorization"])),
                                          headers={"content-type": "application/json"})


RUN_ECHO = {
    "id": "run-1",
    "status": "passed",
    "scenario_name": "echo",
    "turn_results": [{"id": "t-1", "turn_index": 0, "criteria_results": [{"id": "c-1", "verdict": "PASS"}]}],
}


def run_with_critique(header: str) -> dict[str, object]:
    run = orjson.loads(orjson.dumps(RUN_ECHO))
    run["turn_results"][0]["criteria_results"][0]["critique"] = f"the judge saw {header}"
    run["turn_results"][0]["response_content"] = header
    run[header] = {"nested": [header]}  # in a key as well
    return dict(run)


def test_echo_in_a_loaded_payload_is_redacted_in_payload_and_body() -> None:
    result = fetch_one(echo_json(200, run_with_critique))
    assert result.outcome == "ok"
    assert_result_clean(result)
    payload = result.payload
    assert isinstance(payload, dict)
    assert payload["turn_results"][0]["criteria_results"][0]["critique"] == "the judge saw Bearer [REDACTED]"
    assert payload["Bearer [REDACTED]"] == {"nested": ["Bearer [REDACTED]"]}


@pytest.mark.parametrize("status", [400, 422, 409])
def test_echo_in_an_error_body_is_redacted_in_the_error(status: int) -> None:
    result = fetch_one(echo_json(status, lambda header: {"detail": "bad", "headers": {"authorization": header}}))
    assert result.outcome == "failed" and result.error is not None and "[REDACTED]" in result.error
    assert_result_clean(result)


def test_echo_in_a_retried_error_body_is_redacted() -> None:
    result = fetch_one(echo_json(500, lambda header: {"detail": header}), max_retries=2)
    assert result.outcome == "failed" and result.attempts == 3
    assert_result_clean(result)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html><p>your request: Authorization: %s</p></html>"),
        ("application/json", b'{"detail": "%s", "trunc'),
        ("application/json", b'{"detail": "%s", oops}'),
    ],
    ids=["html-page", "truncated-json", "syntax-error"],
)
def test_echo_in_an_unparsable_body_is_redacted_in_the_retry_reason(content_type: str, body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        echoed = body.replace(b"%s", request.headers["authorization"].encode())
        return httpx.Response(200, content=echoed, headers={"content-type": content_type})

    result = fetch_one(handler)
    assert result.outcome == "failed" and "[REDACTED]" in (result.error or "")
    assert_result_clean(result)


def test_echo_in_a_body_kept_raw_as_rejected_is_redacted() -> None:
    deep = b'{"echo": "%s", "deep": ' + b"[" * 1100 + b"]" * 1100 + b"}"

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = deep.replace(b"%s", request.headers["authorization"].encode())
        return httpx.Response(200, content=echoed, headers={"content-type": "application/json"})

    result = fetch_one(handler)
    assert result.outcome == "rejected" and result.body is not None
    assert result.body.startswith(b'{"echo": "Bearer [REDACTED]"')
    assert_result_clean(result)


def test_echo_in_headers_and_library_errors_is_redacted() -> None:
    def content_type(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x", headers={"content-type": f"text/{request.headers['authorization']}"})

    def encoding(request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].split()[1]
        return httpx.Response(200, content=b"x", headers={"content-encoding": f"x-{token}"})

    def protocol_error(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError(f"illegal header line: {request.headers['authorization']!r}")

    for handler in (content_type, encoding, protocol_error):
        result = fetch_one(handler)
        assert result.outcome == "failed" and "[redacted]" in (result.error or "").lower(), result.error
        assert_result_clean(result)
        assert CANARY_TOKEN.lower() not in (result.error or "").lower()


ESCAPABLE_TOKEN = 'pat_a/b"c\\d<e>&f'


@pytest.mark.parametrize(
    "spelling",
    [
        b'pat_a\\/b\\"c\\\\d<e>&f',  # short escapes
        b'pat_a/b\\"c\\\\d\\u003ce\\u003e\\u0026f',  # Go's HTML-safe escapes
        b'\\u0070at_\\u0061\\u002Fb\\u0022c\\u005cd<e>&f',  # \\u escapes, hex in either case
    ],
    ids=["short-escapes", "html-safe", "unicode-escapes"],
)
def test_every_json_spelling_of_a_token_with_escapable_characters_is_redacted(spelling: bytes) -> None:
    body = b'{"id": "run-1", "scenario_name": "seen: Bearer ' + spelling + b'"}'
    assert orjson.loads(body)["scenario_name"] == f"seen: Bearer {ESCAPABLE_TOKEN}"
    result = fetch_one(lambda request: httpx.Response(200, content=body, headers={"content-type": "application/json"}),
                       token=ESCAPABLE_TOKEN)
    assert result.outcome == "ok" and result.payload == {"id": "run-1", "scenario_name": "seen: Bearer [REDACTED]"}
    assert_result_clean(result, ESCAPABLE_TOKEN)


def test_redactor_leaves_other_bodies_alone_and_hides_itself() -> None:
    redactor = TokenRedactor(CANARY_TOKEN)
    body = b'{"critique": "line one\\nline two \\u00e9", "id": "pat_CANARY"}'
    assert redactor.body(body) is body, "a body without the token is not copied"
    assert redactor.text("nothing here") == "nothing here"
    assert_no_canary(repr(redactor))


def test_end_to_end_a_load_against_an_echoing_server_writes_no_token(out_dir: Path, cli: Cli) -> None:
    dataset = FakeDataset.generate(seed=5, sessions=6, payload_kb=2.0)
    state = FakePiper(dataset=dataset, token=CANARY_TOKEN, retry_after="0", echo_authorization=True)
    retried, refused, *rest = dataset.session_ids
    state.script(retried, "500", "503")
    state.script(refused, "400")
    with serve(state) as base_url:
        result = cli("load", "--org-id", dataset.org_id, "--base-url", base_url, "--out", str(out_dir),
                     *dataset.session_ids)
    assert result.code == 1, result.stderr  # the 400 is a failed session
    assert_no_canary(result.stdout, result.stderr, folder=out_dir)
    critiques = query(out_dir, "SELECT critique FROM criteria_results")
    assert critiques and all(critique.endswith(" [judge saw: Bearer [REDACTED]]") for (critique,) in critiques)
    assert query(out_dir, "SELECT outcome, error FROM fetch_log WHERE session_id = ?", [refused])[0] == (
        "failed",
        "HTTP 400: b'{\"detail\":\"Bad Request\",\"request_headers\":{\"authorization\":\"Bearer [REDACTED]\"}}'",
    )
    assert query(out_dir, "SELECT outcome, attempts FROM fetch_log WHERE session_id = ?", [retried])[0] == ("loaded", 3)
    assert query(out_dir, "SELECT count(*) FROM fetch_log WHERE outcome = 'loaded'")[0][0] == 1 + len(rest)


def test_end_to_end_a_load_with_agent_usage_against_an_echoing_server_writes_no_token(out_dir: Path, cli: Cli) -> None:
    dataset = FakeDataset.generate(seed=5, sessions=4, payload_kb=2.0)
    state = FakePiper(dataset=dataset, token=CANARY_TOKEN, retry_after="0", echo_authorization=True)
    retried, refused, *rest = dataset.session_ids

    def events_path(session_id: str) -> str:
        return f"/v1/orgs/{dataset.org_id}/responses/sessions/{quote(session_id, safe='')}/events"

    state.script_path(events_path(retried), "500")
    state.script_path(events_path(refused), "400")
    with serve(state) as base_url:
        result = cli("load", "--org-id", dataset.org_id, "--base-url", base_url, "--out", str(out_dir),
                     "--with-agent-usage", *dataset.session_ids)
    assert result.code == 1, result.stderr  # the 400 on the events fails its session
    assert_no_canary(result.stdout, result.stderr, folder=out_dir)
    models = query(out_dir, "SELECT model_name FROM agent_usage")
    assert models and all(model.endswith(" [saw: Bearer [REDACTED]]") for (model,) in models)
    error = query(out_dir, "SELECT outcome, error FROM fetch_log WHERE session_id = ?", [refused])[0]
    assert error[0] == "failed" and "Bearer [REDACTED]" in error[1] and error[1].startswith("agent usage: HTTP 400")
    assert query(out_dir, "SELECT count(DISTINCT session_id) FROM agent_usage")[0][0] == 1 + len(rest)
