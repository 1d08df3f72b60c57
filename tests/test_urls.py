"""Session ids travel as exactly one percent-encoded path segment; unsafe ids never leave the machine."""

from __future__ import annotations

from urllib.parse import unquote

import httpx
import pytest

from connector.errors import PiperConfigError
from connector.urls import by_session_url, normalise_base_url, session_id_problem

BASE = "https://api.letpiper.com"


@pytest.mark.parametrize(
    "session_id",
    ["plain-123", "slack/C04/1699.0001", "a?b=c", "frag#1", "100%", "with space", "café-ü-日本", "+44 7700", "a;b,c"],
)
def test_session_id_is_one_segment_that_decodes_back(session_id: str) -> None:
    url = by_session_url(BASE, "org-1", session_id)
    raw_path = httpx.URL(url).raw_path.decode("ascii")
    prefix = "/v1/orgs/org-1/scenarios/runs/by-session/"
    assert raw_path.startswith(prefix)
    segment = raw_path[len(prefix) :]
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert unquote(segment) == session_id


@pytest.mark.parametrize(
    ("session_id", "reason"),
    [
        ("", "empty"),
        (".", "relative path segment"),
        ("..", "relative path segment"),
        ("x" * 257, "257 characters"),
        ("bad\nid", "control character"),
        ("bad\x00id", "control character"),
        ("bad\x7fid", "control character"),
    ],
)
def test_unsafe_session_ids_are_refused_with_a_reason(session_id: str, reason: str) -> None:
    problem = session_id_problem(session_id)
    assert problem is not None and reason in problem


def test_longest_allowed_session_id_is_fine() -> None:
    assert session_id_problem("x" * 256) is None


def test_org_id_is_encoded_too() -> None:
    assert "/v1/orgs/a%2Fb/" in by_session_url(BASE, "a/b", "s")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/", "http://localhost:1", "https://api.letpiper.com//"])
def test_base_url_accepted_and_trailing_slash_stripped(url: str) -> None:
    assert not normalise_base_url(url).endswith("/")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com", "not an http\\(s\\) URL"),
        ("api.letpiper.com", "not an http\\(s\\) URL"),
        ("http://api.letpiper.com", "plain http"),
        ("https://api.letpiper.com/?x=1", "query"),
    ],
)
def test_bad_base_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(PiperConfigError, match=message):
        normalise_base_url(url)
