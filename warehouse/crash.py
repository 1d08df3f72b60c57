"""Named crash points, for the tests that prove a load survives being killed at any stage.

Set `PIPER_ETL_CRASH_AT=<point>[:<n>]` and the process dies (exit status 86, no cleanup, like a kill)
the n-th time it reaches that point. Unset, a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
from collections import Counter

CRASH_ENV = "PIPER_ETL_CRASH_AT"
CRASH_EXIT_STATUS = 86
POINTS = ("listed", "fetching", "fetched", "scenarios-landed", "parquet-written", "merge-uncommitted", "merged",
          "compact-written", "compact-sql-written", "compact-committed", "compact-vacuum",
          "snapshot-updating", "snapshot-updated", "snapshot-linked")
_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os._exit(CRASH_EXIT_STATUS)
