"""A load on the Parquet files reads stored dimension rows by key from that table's files, as the views say.

`store.landed_dimension_rows` (what `LoadTransaction.stored_dimension` and the sync's stored
sessions read on the Parquet path) must find, for every asked key, the row the current-state view
`sessions` shows: the newest committed load's, also when an older load commits last, across a
compaction, and never a key that was not asked or a load that is not committed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa

from schemas.tables import FETCH_LOG, SESSIONS
from tests.test_compact import settle
from tests.test_dimension_tables import T0, land, land_load, session
from warehouse import compact, store, views
from warehouse.load import open_load

COLUMNS = ("agent_id", "is_test")


def from_views(out: Path, keys: list[str]) -> dict[str, tuple[dict[str, object], str]]:
    con = views.open_current_state(out / "parquet")
    try:
        return store.dimension_rows(con, "sessions", keys, COLUMNS)
    finally:
        con.close()


def test_landed_dimension_rows_are_the_views_rows_of_the_asked_keys(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settle(out, auto=False, grace_seconds=0)
    older = open_load(out, format="parquet", now=T0)  # commits last, with the smallest load_seq
    try:
        first = [("s1", "agent-a"), ("s2", "agent-a"), ("s3", "agent-a")]
        land_load(out, "parquet", first, [], T0 + timedelta(hours=1))
        compact.compact(out)
        land_load(out, "parquet", [("s2", "agent-b")], [], T0 + timedelta(hours=2))
        land(older, [("s1", "agent-old"), ("s4", "agent-old")], [], T0)
        land_load(out, "parquet", [("s2", "agent-c")], [], T0 + timedelta(minutes=30))  # the clock stepped back
    finally:
        older.close()
    running = open_load(out, format="parquet", now=T0 + timedelta(hours=3))  # landed, never committed
    try:
        at = T0 + timedelta(hours=3)
        rows = [session("s1", "agent-uncommitted", running.load_id, at)]
        running.land("main-0001", {"sessions": pa.Table.from_pylist(rows, schema=SESSIONS),
                                   "fetch_log": pa.Table.from_pylist([], schema=FETCH_LOG)})
        keys = ["s1", "s2", "s4", "s9"]
        found = store.landed_dimension_rows(out / "parquet", "sessions", keys, COLUMNS)
        assert found == from_views(out, keys)
        assert {key: row["agent_id"] for key, (row, _) in found.items()} == {
            "s1": "agent-a", "s2": "agent-c", "s4": "agent-old"}
        assert store.landed_dimension_rows(out / "parquet", "sessions", ["s3"], COLUMNS).keys() == {"s3"}
    finally:
        running.close()
