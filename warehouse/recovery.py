"""Finishing what loads that are gone left behind, and bringing DuckDB up to date with the Parquet files.

Only files that provably belong to a writer that is gone are touched: a load's files are recovered
or deleted only while this process holds the lock of that load's manifest (`warehouse/leases.py`),
which the kernel gave up when its writer died. A dead load's complete chunks are committed as a load
of status `recovered` (so the next load does not fetch those sessions again); its incomplete chunks
and temporary files are deleted.

`catch_up` merges into DuckDB every load committed in `OUT/parquet` that the database does not hold
yet (a `--format parquet` load, or one whose merge could not get the database's lock).
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warehouse import compact, landing, leases, objstore, store
from warehouse.merge import merge_landed_load
from warehouse.records import LoadCounts, load_row

CATCH_UP_DIR = ".catch-up"
RECOVERED_PARAMETERS = {"recovered": True, "note": "committed from the landed chunks of an interrupted load"}


def recover(out_dir: Path, claimed: list[leases.Lease], con: duckdb.DuckDBPyConnection | None) -> None:
    """Commit or delete what each claimed dead load left, and release its manifest.

    A dead `--format duckdb` load needs the database: without `con` (this load does not write it, or
    another process holds it) its manifest is released as it is, for a later load to finish.
    """
    for lease in claimed:
        manifest = lease.manifest
        try:
            root = objstore.under(out_dir, manifest.landing_root)  # a URL for a load into an object store
            finished = _commit_landed(root, manifest.load_id, manifest.load_seq, manifest.started_at)
            if finished and manifest.landing_root == landing.STAGING_DIR:
                if con is None:
                    lease.release(forget=False)
                    continue
                merge_staged(con, root, manifest.load_id)
        except BaseException:
            lease.release(forget=False)
            raise
        lease.release(forget=True)


def recover_orphans(out_dir: Path, con: duckdb.DuckDBPyConnection, *, mine: set[str]) -> None:
    """Merge staged loads that have no manifest at all (written by piper-etl before 0.2) and no live writer."""
    root = out_dir / landing.STAGING_DIR
    folder = root / "fetch_log"
    if not folder.is_dir():
        return
    staged = {landing.load_id_of(part) for part in folder.glob("*.parquet")}
    orphans = staged - mine - leases.live_load_ids(out_dir) - _with_manifest(out_dir)
    for load_id in sorted(orphans):
        if _commit_landed(root, load_id, None, None):
            merge_staged(con, root, load_id)


def merge_staged(con: duckdb.DuckDBPyConnection, root: objstore.Root, load_id: str) -> None:
    """Merge a committed staged load unless the database holds it already; then drop its staging files."""
    row = landing.read_load_row(root, load_id)
    if row is not None and load_id not in store.merged_load_ids(con):
        merge_landed_load(con, root, load_id, row)
    landing.remove_load(root, load_id)


def catch_up(con: duckdb.DuckDBPyConnection, parquet_root: objstore.Root, *, state_dir: Path | None = None) -> int:
    """Merge every load committed under `parquet_root` that the database lacks, oldest first; how many.

    A load that a compaction covers is merged from what the compacted files hold of it, written back
    as its parts under `OUT/_staging/.catch-up` for the merge (`compact.extract_load`). `state_dir`: the
    local folder for those parts when `parquet_root` is not `OUT/parquet` (an object store's state folder).
    """
    pending = landing.committed_load_ids(parquet_root) - store.merged_load_ids(con)
    if not pending:
        return 0
    covered = landing.read_manifest(parquet_root).covered & pending
    rows = [row for load_id in pending - covered if (row := landing.read_load_row(parquet_root, load_id)) is not None]
    rows += compact.covered_load_rows(parquet_root, covered)
    rows.sort(key=lambda row: (row.get("load_seq") or 0, str(row["load_id"])))
    if state_dir is None:
        if isinstance(parquet_root, objstore.ObjectPath):
            raise ValueError(f"catching up with {parquet_root} needs the local state folder of its loads")
        state_dir = parquet_root.parent
    extracted = state_dir / landing.STAGING_DIR / CATCH_UP_DIR
    shutil.rmtree(extracted, ignore_errors=True)  # only the DuckDB writer catches up, one at a time
    try:
        for row in rows:
            load_id = str(row["load_id"])
            if load_id in covered:
                compact.extract_load(parquet_root, load_id, extracted)
                merge_landed_load(con, extracted, load_id, row, settle_all=True)  # see merge._NEWEST_VERSIONS
                shutil.rmtree(extracted, ignore_errors=True)
            else:
                merge_landed_load(con, parquet_root, load_id, row)
    finally:
        shutil.rmtree(extracted, ignore_errors=True)
    return len(rows)


def _commit_landed(root: objstore.Root, load_id: str, load_seq: int | None, started_at: str | None) -> bool:
    """Clean a dead load's files and give its complete chunks a `loads` row; False when it landed nothing."""
    landing.remove_temporary_files(root, load_id)
    landing.remove_incomplete_chunks(root, load_id)
    if landing.is_committed(root, load_id):  # its `loads` row landed, or a compaction covers it
        return True
    fetch_log = landing.load_parts(root, load_id, "fetch_log")
    if not fetch_log:
        landing.remove_load(root, load_id)
        return False
    counts = LoadCounts()
    fetched: list[datetime] = []
    for part in fetch_log:
        table = objstore.read_table(part, columns=["outcome", "fetched_at"])
        counts.outcomes.update(Counter(table.column("outcome").to_pylist()))
        fetched.extend(t for t in table.column("fetched_at").to_pylist() if t is not None)
    first = min(fetched, default=None)
    for table_name in landing.DATA_TABLES:
        parts = landing.load_parts(root, load_id, table_name)
        counts.rows[table_name] = sum(objstore.num_rows(part) for part in parts)
    now = datetime.now(UTC)
    begun = datetime.fromisoformat(started_at) if started_at else (first or now)
    landing.write_load_row(root, load_row(
        load_id=load_id, load_seq=load_seq, started_at=begun, finished_at=now, status="recovered",
        counts=counts, parameters=RECOVERED_PARAMETERS,
    ))
    return True


def _with_manifest(out_dir: Path) -> set[str]:
    folder = leases.loads_dir(out_dir)
    return {path.name.removesuffix(".json") for path in folder.glob("*.json")} if folder.is_dir() else set()
