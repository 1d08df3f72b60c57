"""TLS stays verified, redirects never carry the token, SQL never takes values from strings."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path

import httpx
import pytest

from connector.client import PiperClient
from tests.conftest import CANARY_TOKEN, ORG_ID, Cli, SimulatedPiper, assert_no_canary, load_args, query
from warehouse.ddl import quote_ident

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("connector", "schemas", "warehouse", "flows")


def test_tls_verification_is_on_in_both_http_clients() -> None:
    async def contexts() -> tuple[object, ssl.SSLContext]:
        async with PiperClient(base_url="https://api.letpiper.com", org_id=ORG_ID, token=CANARY_TOKEN) as default:
            aiohttp_ssl = default._sender._session.connector._ssl  # type: ignore[union-attr]
        async with PiperClient(
            base_url="https://api.letpiper.com", org_id=ORG_ID, token=CANARY_TOKEN, http_client="httpx"
        ) as fallback:
            httpx_ssl = fallback._sender._client._transport._pool._ssl_context  # type: ignore[union-attr]
        return aiohttp_ssl, httpx_ssl

    aiohttp_ssl, httpx_ssl = asyncio.run(contexts())
    assert aiohttp_ssl is True, "aiohttp verifies certificates with ssl=True (its default)"
    assert httpx_ssl.verify_mode == ssl.CERT_REQUIRED and httpx_ssl.check_hostname


def test_no_code_turns_verification_off() -> None:
    pattern = re.compile(
        r"verify\s*=\s*False|ssl\s*=\s*False|verify_ssl|CERT_NONE|check_hostname\s*=\s*False|_create_unverified_context"
    )
    offenders = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_to_another_host_is_not_followed_and_carries_no_token(status: int) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers={"location": "https://collector.evil.test/steal"})

    async def go() -> str | None:
        async with PiperClient(
            base_url="https://api.letpiper.com", org_id=ORG_ID, token=CANARY_TOKEN,
            transport=httpx.MockTransport(handler),
        ) as client:
            return (await client.fetch_run_by_session("s-1")).error

    error = asyncio.run(go())
    assert [r.url.host for r in seen] == ["api.letpiper.com"]
    assert error is not None and "redirect" in error
    assert_no_canary(error)


def test_identifiers_are_allow_listed() -> None:
    assert quote_ident("runs") == '"runs"' and quote_ident("run_id") == '"run_id"'
    for hostile in ['runs"; DROP TABLE runs; --', "pg_catalog", "x"]:
        with pytest.raises(ValueError, match="not a known table or column"):
            quote_ident(hostile)


def test_sql_shaped_session_ids_are_stored_verbatim(piper: SimulatedPiper, out_dir: Path, cli: Cli) -> None:
    hostile = ["x'); DROP TABLE runs; --", "' OR '1'='1", 'quote"in"id', "back\\slash"]
    for sid in hostile:
        piper.dataset.add_session(sid, status="passed")
    assert cli(*load_args(piper, out_dir, *hostile)).code == 0
    assert {row[0] for row in query(out_dir, "SELECT session_id FROM runs")} == set(hostile)
    assert cli(*load_args(piper, out_dir, *hostile)).code == 0
    assert query(out_dir, "SELECT count(*) FROM fetch_log WHERE outcome = 'skipped'")[0][0] == len(hostile)
