"""A stream's last chunk lands in two pieces, so that less of it is left to land after the last response."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows import pipeline
from flows.settings import LoadSettings
from tests.conftest import CANARY_TOKEN, SimulatedPiper, query
from warehouse import landing


def part_sizes(out_dir: Path, load_id: str) -> list[int]:
    """Sessions per chunk of the main stream (the scenario definitions land as a part of their own)."""
    root = out_dir / landing.PARQUET_DIR
    return [pq.read_metadata(part).num_rows for part in landing.load_parts(root, load_id, "fetch_log")
            if ".main-" in part.name]


@pytest.mark.parametrize(("sessions", "chunk_size", "sizes"), [
    (21, 9, [9, 8, 4]),  # the second chunk lands at 8 with 4 still to come (4 * 2 <= 8)
    (18, 9, [9, 6, 3]),
    (3, 9, [2, 1]),
    (1, 9, [1]),
])
def test_the_last_chunk_is_split_when_a_third_of_it_is_still_to_come(
    piper: SimulatedPiper, out_dir: Path, sessions: int, chunk_size: int, sizes: list[int]
) -> None:
    settings = LoadSettings(org_id=piper.org_id, base_url=piper.base_url, out_dir=out_dir, chunk_size=chunk_size,
                            concurrency=4, format="both")
    summary = pipeline.run_load(piper.dataset.session_ids[:sessions], settings, CANARY_TOKEN)
    assert summary.ok
    assert part_sizes(out_dir, summary.load_id) == sizes
    names = [landing.chunk_of(p).split(".", 1)[1] for p in landing.load_parts(out_dir / "parquet", summary.load_id,
                                                                              "fetch_log")]
    assert names == [*(f"main-{n:04d}" for n in range(1, len(sizes) + 1)), "scenarios"], "named by stream and number"
    assert query(out_dir, "SELECT count(*) FROM runs")[0][0] == sessions
