"""The client closes every socket it opens, whatever the server does: checked here, deterministically.

The suite ignores unclosed-socket warnings raised by the garbage collector in arbitrary later tests
(pyproject.toml): Prefect's own client leaves such sockets to its test server, and the collector reports
them wherever a full collection happens to run. Our client's sockets are checked here instead, right
after each fetch, under every fault that ends a request early.
"""

from __future__ import annotations

import gc
import warnings
from urllib.parse import urlsplit

import pytest

from connector.retry import RetryPolicy
from tests import faultserver as fs
from tests.conftest import SimulatedPiper
from tests.test_faults_network import fetch

BEHAVIOURS = {
    "ok": fs.ok,
    "connection-reset": fs.reset,
    "short-body": fs.short_body,
    "read-timeout": fs.hang,
    "deadline-on-drip": fs.drip,
    "html-page": fs.html_page,
    "gzip-bomb": fs.gzip_bomb,
    "huge-body": fs.huge,
}


def unclosed_sockets_after(action: object, base_url: str) -> list[str]:
    """Run `action`, collect garbage, and return the warnings about unclosed sockets to `base_url`'s port.

    Only sockets to that server (and aiohttp sessions, which only our client opens) count: garbage other
    tests left behind (Prefect's httpx client) may be collected at the same moment and is not ours.
    """
    port = urlsplit(base_url).port
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert callable(action)
        action()
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    ours = (f"raddr=('127.0.0.1', {port})", "Unclosed client session", "Unclosed connector")  # the last two: aiohttp
    return [m for m in messages if any(mark in m for mark in ours)]


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS), ids=list(BEHAVIOURS))
def test_no_socket_is_left_open_after_a_fault(behaviour: str, http_client: str) -> None:
    with fs.FaultServer([BEHAVIOURS[behaviour]]).running() as server:
        leaks = unclosed_sockets_after(
            lambda: fetch(server.base_url, ["s-1", "s-2"], retry=RetryPolicy(max_retries=1, backoff_base=0.01),
                          http_client=http_client),
            server.base_url,
        )
    assert leaks == []


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_no_socket_is_left_open_after_a_concurrent_fetch(piper: SimulatedPiper, http_client: str) -> None:
    leaks = unclosed_sockets_after(
        lambda: fetch(piper.base_url, piper.dataset.session_ids, concurrency=8, http_client=http_client),
        piper.base_url,
    )
    assert leaks == []
