"""After any sequence of --format values in one folder, every store a load writes holds its sessions' current state."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.conftest import Cli, SimulatedPiper, load_args
from warehouse.views import open_current_state

SEQUENCES = [
    ["parquet", "duckdb", "both"],
    ["duckdb", "parquet", "both", "duckdb"],
    ["both", "duckdb", "parquet", "both"],
    ["parquet", "both", "parquet", "duckdb", "both"],
]


def stored_statuses(out_dir: Path, store: str, session_ids: list[str]) -> dict[str, str]:
    sql = "SELECT session_id, status FROM runs WHERE session_id IN (SELECT unnest(?::VARCHAR[]))"
    if store == "parquet":
        con = open_current_state(out_dir / "parquet")
    else:
        con = duckdb.connect(str(out_dir / "piper.duckdb"), read_only=True)
    try:
        return dict(con.execute(sql, [session_ids]).fetchall())
    finally:
        con.close()


@pytest.mark.parametrize("formats", SEQUENCES, ids=["-".join(s) for s in SEQUENCES])
def test_every_store_a_load_writes_holds_the_current_state_of_its_sessions(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, formats: list[str]
) -> None:
    unfinished = [f"web-unfinished-{n}" for n in range(4)]
    for session_id in unfinished:
        piper.dataset.add_session(session_id, status="running")
    ids = [*piper.dataset.session_ids[:10], *unfinished]
    for step, fmt in enumerate(formats):
        if step and unfinished:
            piper.dataset.complete_pending(unfinished.pop())  # one run finishes between two loads
        result = cli(*load_args(piper, out_dir, "--format", fmt, *ids))
        assert result.code == 0, result.stderr
        expected = {s: piper.dataset.status_of(s) for s in ids if piper.dataset.has_run(s)}
        for store in ("parquet", "duckdb"):
            if fmt in (store, "both"):
                assert stored_statuses(out_dir, store, ids) == expected, f"step {step} ({fmt}): {store}"
