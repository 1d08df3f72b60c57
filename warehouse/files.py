"""Writing a file so that readers see the old content or the new, never a part, even after a crash.

Every file piper-etl publishes (Parquet parts, `current_state.sql`, the BI snapshot, the HTML report,
the load manifests) is written through `write_atomically`: to a hidden temporary name in the same
folder, flushed and fsynced, renamed over the target, and the rename made durable by an fsync of the
folder. A temporary name carries the writer's tag (`.<name>.<tag>.<random>.tmp`), so that clean-up can
tell whose it is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def temporary_name(path: Path, tag: str = "") -> Path:
    """A hidden name beside `path`; `tag` (a load id) tells clean-up which writer it belongs to."""
    middle = f"{tag}." if tag else ""
    return path.with_name(f".{path.name}.{middle}{secrets.token_hex(4)}{TMP_SUFFIX}")


def write_atomically(
    path: Path, write: Callable[[BinaryIO], None], *, tag: str = "", sync_folder: bool = True
) -> Path:
    """Call `write` on a temporary file, then rename it to `path` durably; returns `path`.

    `sync_folder=False` leaves the rename's durability to the caller, who fsyncs the folder once for
    many files (a load's parts: before the `loads` row that commits them).
    """
    tmp = temporary_name(path, tag)
    sink = _create(tmp)  # before the clean-up below: a failure here has nothing to remove
    try:
        with sink:
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, path)
        if sync_folder:
            fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _create(tmp: Path) -> BinaryIO:
    """Open a new file, making its folder; again if another load pruned the empty folder meanwhile."""
    for _ in range(3):
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            return open(tmp, "xb")
        except FileNotFoundError:
            continue
    return open(tmp, "xb")


def prune_empty_folders(root: Path) -> None:
    """Remove `root`'s empty subfolders, then `root` itself if empty (a writer that needs one makes it again)."""
    if not root.is_dir():
        return
    for folder in root.iterdir():
        if folder.is_dir():
            with contextlib.suppress(OSError):
                folder.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def write_text_atomically(path: Path, text: str, *, tag: str = "") -> Path:
    data = text.encode("utf-8")

    def write(sink: BinaryIO) -> None:
        sink.write(data)

    return write_atomically(path, write, tag=tag)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_temporary(path: Path, tag: str | None = None) -> bool:
    """Whether `path` is a temporary file of `write_atomically` (of writer `tag`, when given)."""
    name = path.name
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return False
    return tag is None or f".{tag}." in name


def xdg_dir(variable: str, fallback: str, env: Mapping[str, str]) -> Path:
    """An XDG base directory: `$variable` when it is an absolute path (a relative one is ignored, as the
    XDG rule says), else `~/fallback` (`HOME` from `env`, else the user's home)."""
    given = env.get(variable, "").strip()
    if given and Path(given).is_absolute():
        return Path(given)
    home = env.get("HOME", "").strip()
    return (Path(home) if home else Path.home()) / fallback
