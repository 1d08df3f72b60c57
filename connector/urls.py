"""Building request URLs: the session id travels as exactly one percent-encoded path segment."""

from __future__ import annotations

import ipaddress
from urllib.parse import quote, urlsplit

from connector.errors import PiperConfigError

MAX_SESSION_ID_LENGTH = 256


def session_id_problem(session_id: str) -> str | None:
    """Say why no encoding makes this session id safe to send, or None when it is fine.

    Percent-encoding carries any character, but `.` and `..` are path navigation that clients and
    proxies normalise away, control characters are refused by many servers and logs, and an empty
    segment would address a different endpoint.
    """
    if session_id == "":
        return "session id is empty"
    if session_id in (".", ".."):
        return f"session id {session_id!r} is a relative path segment"
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        return f"session id is {len(session_id)} characters long (the limit is {MAX_SESSION_ID_LENGTH})"
    if not _is_utf8(session_id):
        return f"session id is not valid UTF-8: {session_id_bytes(session_id)!r}"
    for char in session_id:
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            return f"session id contains the control character {char!r}"
    return None


def printable_session_id(session_id: str) -> str:
    """The session id as valid text for tables and logs: bytes that are not UTF-8 shown as `\\xff`.

    An id read from argv, a file or stdin keeps its undecodable bytes as lone surrogates
    (`surrogateescape`); Arrow, DuckDB and JSON refuse those. Valid ids come back unchanged.
    """
    if _is_utf8(session_id):
        return session_id
    return session_id_bytes(session_id).decode("utf-8", errors="backslashreplace")


def session_id_bytes(session_id: str) -> bytes:
    """The bytes a session id was read as: a surrogate-escaped str gives back its undecodable bytes.

    Other lone surrogates (U+D800 to U+DC7F, which surrogateescape never makes) come out as their
    three-byte form.
    """
    try:
        return session_id.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        return session_id.encode("utf-8", errors="surrogatepass")


def path_segment(value: str) -> str:
    """Percent-encode `value` as one path segment: `/`, `?`, `#`, `%` and spaces are all escaped."""
    return quote(value, safe="")


def normalise_base_url(base_url: str) -> str:
    """Check a base URL and strip its trailing slash.

    Plain http is accepted only for loopback hosts (the simulated API, a local tunnel): elsewhere the
    bearer token would cross the network unencrypted.
    """
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PiperConfigError(f"base URL {base_url!r} is not an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise PiperConfigError(f"base URL {base_url!r} must not carry a query or fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise PiperConfigError(
            f"base URL {base_url!r} uses plain http to a non-loopback host; use https so the token stays secret"
        )
    return base_url.strip().rstrip("/")


def by_session_url(base_url: str, org_id: str, session_id: str) -> str:
    """URL of `GET /v1/orgs/{org_id}/scenarios/runs/by-session/{session_id}`."""
    return f"{base_url}/v1/orgs/{path_segment(org_id)}/scenarios/runs/by-session/{path_segment(session_id)}"


def sessions_list_url(base_url: str, org_id: str, *, limit: int, offset: int) -> str:
    """URL of one page of `GET /v1/orgs/{org_id}/sessions/`."""
    return f"{base_url}/v1/orgs/{path_segment(org_id)}/sessions/?limit={int(limit)}&offset={int(offset)}"


def scenarios_list_url(base_url: str, org_id: str, *, limit: int, offset: int) -> str:
    """URL of one page of `GET /v1/orgs/{org_id}/scenarios`."""
    return f"{base_url}/v1/orgs/{path_segment(org_id)}/scenarios?limit={int(limit)}&offset={int(offset)}"


def scenario_url(base_url: str, org_id: str, scenario_id: str) -> str:
    """URL of `GET /v1/orgs/{org_id}/scenarios/{scenario_id}` (the id as one percent-encoded segment)."""
    return f"{base_url}/v1/orgs/{path_segment(org_id)}/scenarios/{path_segment(scenario_id)}"

def session_events_url(base_url: str, org_id: str, session_id: str) -> str:
    """URL of `GET /v1/orgs/{org_id}/responses/sessions/{session_id}/events` (the agent's runs in the session)."""
    return f"{base_url}/v1/orgs/{path_segment(org_id)}/responses/sessions/{path_segment(session_id)}/events"


def _is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
