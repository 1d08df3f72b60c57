"""A load's manifest is locked while its writer lives: only a dead writer's files may be recovered."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from warehouse import leases

HOLD = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from warehouse import leases
lease = leases.begin(Path(sys.argv[1]), load_id=sys.argv[2], formats=("parquet",), landing_root="parquet",
                     started_at=datetime.now(UTC))
print("holding", flush=True)
sys.stdin.readline()
"""


def begin(out_dir: Path, load_id: str, when: datetime | None = None) -> leases.Lease:
    return leases.begin(out_dir, load_id=load_id, formats=("parquet", "duckdb"), landing_root="parquet",
                        started_at=when or datetime.now(UTC))


def test_a_live_writers_manifest_is_never_claimed_and_a_dead_ones_is(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[1])
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "live-load"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        assert leases.claim_dead(tmp_path) == []
        assert leases.live_load_ids(tmp_path) == {"live-load"}
    finally:
        holder.communicate(timeout=30)  # closes its stdin: it exits, and the kernel drops its lock
    (claimed,) = leases.claim_dead(tmp_path)  # the writer is gone; its manifest stays until recovered
    assert claimed.manifest.load_id == "live-load" and claimed.held
    assert leases.claim_dead(tmp_path) == [], "claimed by this process until it releases it"
    claimed.release(forget=True)
    assert not (tmp_path / "_loads" / "live-load.json").exists()


def test_a_released_but_kept_manifest_is_claimed_again(tmp_path: Path) -> None:
    lease = begin(tmp_path, "kept")
    lease.release(forget=False)
    (again,) = leases.claim_dead(tmp_path)
    assert again.manifest == lease.manifest
    again.release(forget=True)


def test_load_order_never_goes_back_with_the_clock(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    first = begin(tmp_path, "first", now)
    second = begin(tmp_path, "second", now - timedelta(hours=1))
    third = begin(tmp_path, "third", now + timedelta(seconds=1))
    seqs = [lease.manifest.load_seq for lease in (first, second, third)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    for lease in (first, second, third):
        lease.release(forget=True)
