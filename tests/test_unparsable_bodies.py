"""2xx bodies that never parse however often they are fetched: loaded when they can be, else rejected and kept raw.

Truncated bodies and HTML pages are still retried like a 503; only a body that is the same every time
(nested too deep for any parser, or a syntax error in the very same bytes twice) is given up on at once.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from connector.body import NotJson, Refetch, decode_json
from connector.client import FetchResult
from tests.conftest import Cli, SimulatedPiper, load_args, query
from tests.test_token_redaction import fetch_one as fetch_with

BOM = b"\xef\xbb\xbf"
RUN = b'{"id": "run-1", "status": "passed", "turn_results": []}'
DEEP = b'{"id": "run-1", "extra": ' + b"[" * 1100 + b"]" * 1100 + b"}"


def fetch_one(*bodies: bytes, max_retries: int = 3, content_type: str = "application/json") -> tuple[FetchResult, int]:
    """Fetch one session from a server answering 200 with `bodies` in turn (the last repeats)."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        body = bodies[min(len(calls), len(bodies)) - 1]
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    return fetch_with(handler, max_retries=max_retries), len(calls)


def walk_strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in walk_strings(item)]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in [key, *walk_strings(item)]]
    return []


def assert_valid_unicode(payload: object) -> None:
    for text in walk_strings(payload):
        text.encode("utf-8")  # raises on a lone surrogate, as Arrow would refuse it
    orjson.dumps(payload)


@pytest.mark.parametrize(
    ("body", "refetch"),
    [
        (b"<html>down</html>", Refetch.HELPS),  # with content type text/html, below
        (b"", Refetch.HELPS),
        (b"   \r\n", Refetch.HELPS),
        (b'{"id": "run-1", "sta', Refetch.HELPS),
        (b'{"id": "run-1", "name": "caf\xc3', Refetch.HELPS),  # cut inside a character
        (b'{"id": "run-1"} trailing', Refetch.ONCE),
        (b'{"id": "run-1",}', Refetch.ONCE),
        (b'{"id": "run-1", "score": NaN}', Refetch.ONCE),
        (b'{"id": "run-\xff1"}', Refetch.ONCE),
        (DEEP, Refetch.USELESS),
    ],
    ids=["html", "empty", "blank", "truncated", "cut-in-a-character", "trailing-garbage", "trailing-comma", "nan",
         "invalid-utf8", "too-deep"],
)
def test_what_a_refused_body_is_worth_fetching_again(body: bytes, refetch: Refetch) -> None:
    content_type = "text/html" if body.startswith(b"<html>") else "application/json"
    decoded = decode_json(content_type, body)
    assert isinstance(decoded, NotJson) and decoded.refetch is refetch


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (BOM + RUN, orjson.loads(RUN)),
        (b'{"a": "x\\ud800y"}', {"a": "x\ufffdy"}),
        (b'{"a": "\\udc00"}', {"a": "\ufffd"}),
        (b'{"a": "\\ud83d\\ude00 ok \\ud83d"}', {"a": "\U0001f600 ok \ufffd"}),
        (b'{"k\\ud800": ["\\ud800", {"deeper": ["\\udfff", 1, null, "caf\xc3\xa9"]}]}',
         {"k\ufffd": ["\ufffd", {"deeper": ["\ufffd", 1, None, "caf\u00e9"]}]}),
        (b'"\\ud800"', "\ufffd"),
        (BOM + b'{"a": "\\ud800"}', {"a": "\ufffd"}),
    ],
    ids=["bom", "lone-high", "lone-low", "pair-and-lone", "keys-and-nesting", "top-level-string", "bom-and-surrogate"],
)
def test_bodies_orjson_refuses_are_loaded_when_they_can_be(body: bytes, expected: object) -> None:
    result, calls = fetch_one(body)
    assert result.outcome == "ok" and calls == 1 and result.attempts == 1
    assert result.payload == expected
    assert_valid_unicode(result.payload)
    assert result.body == body, "the raw body is kept as it came"


def test_nesting_deeper_than_the_parser_allows_is_rejected_at_once_with_the_body() -> None:
    result, calls = fetch_one(DEEP)
    assert (result.outcome, result.http_status, result.attempts, calls) == ("rejected", 200, 1, 1)
    assert result.body == DEEP and result.payload is None
    assert result.error is not None and "nested deeper than the parser allows" in result.error


@pytest.mark.parametrize(
    "body", [b'{"id": "run-1"} <!-- cache -->', b'{"id": "run-1", "x": NaN}', b'{"id": "\xff"}'],
    ids=["trailing-garbage", "nan", "invalid-utf8"],
)
def test_the_same_broken_bytes_twice_are_rejected_not_retried_to_exhaustion(body: bytes) -> None:
    result, calls = fetch_one(body, max_retries=5)
    assert (result.outcome, result.attempts, calls) == ("rejected", 2, 2)
    assert result.body == body
    assert result.error is not None and result.error.endswith("; the same bytes came back when fetched again")


def test_a_broken_body_that_changes_is_retried_and_may_load() -> None:
    result, calls = fetch_one(b'{"id": "run-1"} junk', RUN)
    assert (result.outcome, result.attempts, calls) == ("ok", 2, 2)


def test_a_broken_body_that_changes_every_time_fails_after_the_retries() -> None:
    bodies = [b'{"id": "run-1"} junk %d' % n for n in range(10)]
    result, calls = fetch_one(*bodies, max_retries=3)
    assert (result.outcome, result.attempts, calls) == ("failed", 4, 4)
    assert result.error is not None and "not valid JSON" in result.error and result.body is None


def test_without_retries_a_broken_body_cannot_be_confirmed_and_fails() -> None:
    result, calls = fetch_one(b'{"id": "run-1"} junk', max_retries=0)
    assert (result.outcome, calls) == ("failed", 1)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"id": "run-1", "sta', "application/json"),
        (b"", "application/json"),
        (b"<!DOCTYPE html><title>Sign in</title>", "text/html"),
    ],
    ids=["truncated", "empty", "html"],
)
def test_truncated_empty_and_html_bodies_are_still_retried_to_exhaustion(body: bytes, content_type: str) -> None:
    result, calls = fetch_one(body, max_retries=3, content_type=content_type)
    assert (result.outcome, result.attempts, calls) == ("failed", 4, 4)


def test_end_to_end_never_parsing_bodies_are_loaded_or_rejected_with_the_body_kept(
    piper: SimulatedPiper, out_dir: Path, cli: Cli
) -> None:
    dataset = piper.dataset
    bom, surrogate, deep, garbage, fine = dataset.session_ids[:5]
    surrogate_run = orjson.loads(dataset.payload_bytes(surrogate) or b"")
    surrogate_run["scenario_name"] = "PLACEHOLDER"
    dataset.set_body(bom, BOM + (dataset.payload_bytes(bom) or b""))
    dataset.set_body(surrogate, orjson.dumps(surrogate_run).replace(b"PLACEHOLDER", b"broken \\ud800 name"))
    dataset.set_body(deep, DEEP)
    dataset.set_body(garbage, b'{"id": "run-1"} garbage')
    result = cli(*load_args(piper, out_dir, bom, surrogate, deep, garbage, fine))
    assert result.code == 1, result.stderr  # rejected sessions make the load partial
    log = dict(query(out_dir, "SELECT session_id, outcome || ' ' || attempts FROM fetch_log"))
    assert log == {bom: "loaded 1", surrogate: "loaded 1", deep: "rejected 1", garbage: "rejected 2", fine: "loaded 1"}
    names = query(out_dir, "SELECT scenario_name FROM runs WHERE session_id = ?", [surrogate])
    assert names == [("broken \ufffd name",)]
    rejected = dict(query(out_dir, "SELECT session_id, body FROM rejected_payloads"))
    assert rejected == {deep: DEEP.decode(), garbage: '{"id": "run-1"} garbage'}
    reasons = dict(query(out_dir, "SELECT session_id, reason FROM rejected_payloads"))
    assert "nested deeper than the parser allows" in reasons[deep] and "same bytes came back" in reasons[garbage]
    errors = dict(query(out_dir, "SELECT session_id, error FROM fetch_log WHERE outcome = 'rejected'"))
    assert errors[deep] == f"payload rejected: {reasons[deep]}"
