"""The object-store half of compaction (`--out s3://bucket/prefix`): the steps that differ from a local folder.

`warehouse/compact.py` runs the same compaction on both: the same plan, the same rows, the same
manifest, under the same locks, which for a store are those of its local state folder (the folder of
`--database`, else `objstore.state_folder`: `_loads/.compact.lock` and `_loads/.lock`, the locks its
loads take). What an object store changes is how a file appears and goes, since it has no rename and no
atomic change of several objects:

1. Each compacted file is written to a local scratch file, then uploaded as one object (`upload`: one
   PUT, whole or absent) under a name no manifest has used (`g<generation>-<random>-<n>.parquet`).
2. `current_state.sql`, then the manifest `parquet/_compacted/manifest.json`, are PUT under the state
   folder's lock: one PUT replaces the manifest whole, and that PUT is the commit. Readers follow the
   manifest (`views.read_layout` reads it first), so they see the state before it or after it.
3. Only then are the objects it supersedes deleted, and only once the grace period has passed since it
   retired them (`delete_retired`): a reader that listed the parts before the manifest changed finds
   them for that long, as on a local folder. Objects a dead compaction uploaded but never committed are
   named by no manifest: nothing reads them, and the next compaction deletes them once they are older
   than the grace period (`remove_leftovers`; their age is the store's last-modified time).

Requests (S3), besides the reads DuckDB makes of the files it merges (a footer and the row groups of each):
one LIST per table folder for each look at the landing (`views.read_layout`: a compaction takes three), one
PUT per file written, two PUTs for the commit, one paged LIST of `_compacted/` for the leftovers, and for
the deletions one LIST per table folder plus one batched DELETE per 1,000 objects, twice (parts, then the
loads' `loads` objects), and one PUT of the manifest that forgets them.
"""

from __future__ import annotations

from schemas.tables import LANDED_TABLES
from warehouse import compacted, landing, objstore
from warehouse.crash import crash_point
from warehouse.objstore import ObjectPath


def remove_leftovers(root: ObjectPath, named: set[str], grace_seconds: float, now: float) -> int:
    """Delete the objects under `_compacted/` that no manifest names, once older than the grace period
    (a dead compaction's; a reader may have read the `current_state.sql` it wrote before dying)."""
    folder = root / compacted.COMPACTED_DIR
    manifest = folder / compacted.MANIFEST_FILE
    doomed = [path for path, modified in objstore.listing(folder).items()
              if path != manifest and _relative(root, path) not in named and modified + grace_seconds <= now]
    return objstore.remove(doomed)


def delete_retired(root: ObjectPath, retired_files: list[str], retired_loads: list[str]) -> int:
    """Delete retired compacted files and every object of the retired loads; each load's `loads` object last.

    A kill in between leaves the manifest still listing them as retired, so the next compaction or load
    deletes the rest (an object already gone is no error).
    """
    loads = set(retired_loads)
    doomed = [root / name for name in retired_files]
    if loads:
        for table in LANDED_TABLES:
            folder = root / table
            doomed += [folder / name for name in objstore.names(folder)
                       if name.endswith(".parquet") and landing.load_id_of_name(name) in loads]
    deleted = 0
    for batch in (doomed, [landing.load_row_path(root, load_id) for load_id in sorted(loads)]):
        if batch:  # the `loads` objects last, as locally: the object that names the load
            deleted += objstore.remove(batch)
            crash_point("compact-vacuum")
    return deleted


def _relative(root: ObjectPath, path: ObjectPath) -> str:
    return path.url.removeprefix(root.url + "/")
