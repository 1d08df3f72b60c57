"""Session ids with reserved or non-ASCII characters reach the API as one segment and round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli, SimulatedPiper, load_args, query

ODD_IDS = ["slack/C04ABC/1699999999.000100", "a?b=c&d", "frag#ment", "100% sure", "sp ace", "café-日本-☎", "+44;x,y"]


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_special_ids_round_trip(piper: SimulatedPiper, out_dir: Path, cli: Cli, http_client: str) -> None:
    for sid in ODD_IDS:
        piper.dataset.add_session(sid, status="passed")
    result = cli(*load_args(piper, out_dir, "--http-client", http_client, *ODD_IDS))
    assert result.code == 0, result.stderr
    assert {r.session_id for r in piper.state.requests if r.session_id is not None} == set(ODD_IDS)  # not scenarios
    stored = {row[0] for row in query(out_dir, "SELECT session_id FROM runs")}
    assert stored == set(ODD_IDS)
    assert {row[0] for row in query(out_dir, "SELECT DISTINCT session_id FROM criteria_results")} <= set(ODD_IDS)
