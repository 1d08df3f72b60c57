"""The read-only snapshot `OUT/piper-bi.duckdb` that dashboards open instead of the load's database.

A DuckDB file has either one writer process or several read-only ones, never both. If dashboards
opened `piper.duckdb`, a scheduled load would fail while one is open, and a dashboard opening it in the
middle of a merge would wait or fail. So after every merge the load, still holding the database's lock
(no other process can write it) and right after a CHECKPOINT (the file alone holds every committed
row), copies the database to a temporary file beside the snapshot and renames it over the snapshot:

* a dashboard never blocks a load: the load never opens the snapshot, it only replaces its name;
* a dashboard never sees half a load: the rename is atomic, so a new connection opens either the
  previous complete snapshot or the new one; a connection opened earlier keeps reading the file it
  opened (on Linux and macOS the old file lives on until its last reader closes it).

On Windows a file held open cannot be replaced: the publish is then skipped with a warning and the
load still succeeds; the next load publishes again.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from warehouse import files

SNAPSHOT_FILE = "piper-bi.duckdb"
_COPY_BUFFER = 1 << 20
logger = logging.getLogger(__name__)


class SnapshotError(RuntimeError):
    """The database cannot be copied whole: it has a write-ahead log (no CHECKPOINT since the last write)."""


def snapshot_path(out_dir: Path) -> Path:
    return out_dir / SNAPSHOT_FILE


def publish_snapshot(database: Path, target: Path) -> Path | None:
    """Copy `database` to `target` atomically; returns `target`, or None when Windows refused the rename.

    The caller must hold the database open (its lock keeps other writers out) and have just run a
    CHECKPOINT, so that the file alone holds every committed row.
    """
    wal = database.with_name(database.name + ".wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise SnapshotError(f"{database} has a write-ahead log ({wal.name}): run CHECKPOINT before publishing")
    for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by a killed publish (one at a time)
        stale.unlink(missing_ok=True)
    with open(database, "rb") as source:
        try:
            return files.write_atomically(target, lambda sink: shutil.copyfileobj(source, sink, _COPY_BUFFER))
        except PermissionError:
            if os.name != "nt":
                raise
            logger.warning("%s is held open by a reader that Windows will not let go of; not replaced", target)
            return None
