"""Which loads are writing an output folder right now, and in which order loads count.

Every load, from the moment it opens until it ends, holds an exclusive `flock` on its manifest
`OUT/_loads/<load_id>.json` (its id, sequence number, stores and landing root). The kernel drops the
lock when the process dies, however it dies, so "the manifest is not locked" proves that its writer
is gone: only then may another load recover or delete that load's files. Decisions that must not race
(allocating a sequence number, creating a manifest, claiming a dead one) are taken under the short lock
`OUT/_loads/.lock`.

Load order never comes from the wall clock alone: `load_seq` is one more than the greatest number
handed out in this folder, or the current time in microseconds if that is greater. So a later load
always has a greater number, even after the clock stepped back, and a lost `sequence` file only falls
back to time order.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from warehouse import files

LOADS_DIR = "_loads"
SEQUENCE_FILE = "sequence"


@dataclass(frozen=True)
class Manifest:
    """What a live load is: enough for another load to recover its files if it dies."""

    load_id: str
    load_seq: int
    formats: tuple[str, ...]  # "parquet", "duckdb"
    landing_root: str  # relative to the output folder
    started_at: str  # ISO 8601, UTC

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(
            load_id=str(data["load_id"]),
            load_seq=int(data["load_seq"]),
            formats=tuple(data["formats"]),
            landing_root=str(data["landing_root"]),
            started_at=str(data["started_at"]),
        )


class Lease:
    """An exclusive lock on one load's manifest, held until `release`."""

    def __init__(self, path: Path, fd: int, manifest: Manifest) -> None:
        self.path, self._fd, self.manifest = path, fd, manifest

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self, *, forget: bool) -> None:
        """Drop the lock; `forget` also deletes the manifest (the load's files need nobody any more)."""
        if self._fd < 0:
            return
        try:
            if forget:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1


def loads_dir(out_dir: Path) -> Path:
    return out_dir / LOADS_DIR


@contextmanager
def folder_lock(out_dir: Path) -> Iterator[None]:
    """The short lock under which manifests are created and claimed."""
    folder = loads_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def begin(
    out_dir: Path, *, load_id: str, formats: tuple[str, ...], landing_root: str, started_at: datetime
) -> Lease:
    """Allocate the next sequence number, write this load's manifest and lock it; one step under the folder lock."""
    folder = loads_dir(out_dir)
    with folder_lock(out_dir):
        sequence = folder / SEQUENCE_FILE
        try:
            last = int(sequence.read_text(encoding="ascii").strip() or 0)
        except (FileNotFoundError, ValueError):
            last = 0
        load_seq = max(last + 1, int(started_at.timestamp() * 1_000_000))
        files.write_text_atomically(sequence, f"{load_seq}\n")
        manifest = Manifest(load_id, load_seq, formats, landing_root, started_at.isoformat())
        path = folder / f"{load_id}.json"
        files.write_text_atomically(path, manifest.to_json())
        fd = os.open(path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else can hold it: we are under the folder lock
        return Lease(path, fd, manifest)


def claim_dead(out_dir: Path) -> list[Lease]:
    """Lock the manifest of every load whose writer is gone, oldest first; the caller recovers and releases them."""
    folder = loads_dir(out_dir)
    if not folder.is_dir():
        return []
    claimed: list[Lease] = []
    with folder_lock(out_dir):
        for path in sorted(folder.glob("*.json")):
            fd = _lock_if_free(path)
            if fd is None:
                continue  # its writer is alive (or it is gone already)
            try:
                manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
            except FileNotFoundError:  # its load finished and forgot it while we waited for the lock
                os.close(fd)
                continue
            except (ValueError, KeyError, TypeError):
                os.close(fd)
                path.unlink(missing_ok=True)  # not ours to understand; it names no files
                continue
            claimed.append(Lease(path, fd, manifest))
    return sorted(claimed, key=lambda lease: lease.manifest.load_seq)


def live_load_ids(out_dir: Path) -> set[str]:
    """The loads whose writer holds its manifest right now."""
    folder = loads_dir(out_dir)
    if not folder.is_dir():
        return set()
    live: set[str] = set()
    with folder_lock(out_dir):  # as `begin`: a manifest is never seen between its creation and its lock
        for path in folder.glob("*.json"):
            fd = _lock_if_free(path)
            if fd is None:
                if path.exists():
                    live.add(path.name.removesuffix(".json"))
            else:
                os.close(fd)
    return live


def _lock_if_free(path: Path) -> int | None:
    """A descriptor holding the exclusive lock of `path`, or None when another process holds it (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
