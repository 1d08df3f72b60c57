"""The compacted part of a Parquet landing, described by one manifest: which files, covering which loads.

    <root>/_compacted/manifest.json               written atomically; the commit of every compaction
    <root>/_compacted/<table>/g<gen>-<tag>-<n>.parquet   compacted rows of many committed loads
    <root>/_compacted/run_versions/g<gen>-<tag>-<n>.parquet   the run-version index of those loads

The manifest lists, per table, the compacted files that are current; the set of loads whose rows they
hold (`covered`: every such load's own parts are no longer read); the files and loads that a
compaction replaced and when (`retired_*`: deleted once the grace period has passed, so that a reader
who read an older `current_state.sql` still finds its files); and the folder's compaction settings.
A file under `_compacted/` that the manifest does not name was written by a compaction that died
before its commit: nothing reads it, and it is deleted after the grace period too.

The run-version index (`VERSIONS`, `VERSIONS_SCHEMA`) lets the views and a load's compaction decide which
run versions are current without a window over the whole `fetch_log`: one row per run version of the
covered loads (`run_id`, `session_id`, `load_id`, its `load_seq`) and `is_current`, whether it was current
among the covered loads when the row was written. Adding versions never makes an older one current again,
so a later compaction that supersedes a version adds a second row for it with `is_current` false; a
version is current among the covered loads when it has no false row. A data file flagged `current`
holds no row of a version with a false row, so the views need not look for such rows in it. A manifest
of format 1 (written before the index existed) reads as `indexed` false: the views then rank the
compacted `fetch_log`, and the next compaction writes the index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa

from warehouse import files

COMPACTED_DIR = "_compacted"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
VERSIONS = "run_versions"
"""The manifest's name for the run-version index, kept with the tables' files (module docstring)."""
VERSIONS_SCHEMA = pa.schema([
    pa.field("run_id", pa.string()), pa.field("session_id", pa.string()), pa.field("load_id", pa.string()),
    pa.field("load_seq", pa.int64()), pa.field("is_current", pa.bool_()),
])

DEFAULT_GRACE_SECONDS = 3600.0
"""How long a file replaced by a compaction stays on disk: a reader holding an older view finds it meanwhile."""


class ManifestError(ValueError):
    """The compaction manifest cannot be read (edited by hand, or written by a newer piper-etl)."""


@dataclass(frozen=True)
class Settings:
    """The folder's compaction settings, kept in its manifest so that every load into it agrees.

    `auto`: loads compact when they cross the threshold (`warehouse/compact.py`); `keep_superseded`:
    compaction keeps the rows of run versions and dimension rows that are no longer current (the full
    history stays in the files; the views show the same current state either way); `grace_seconds`:
    how long replaced files stay.
    """

    auto: bool = True
    keep_superseded: bool = False
    grace_seconds: float = DEFAULT_GRACE_SECONDS


@dataclass(frozen=True)
class CompactedFile:
    """One compacted file. `current`: a file of `runs`, `turns` or `criteria_results` that holds no row of
    a version the run-version index marks superseded (written without them, and no later compaction
    superseded a version it may hold); False when unknown (manifests written before the flag)."""

    path: str  # relative to the landing root, POSIX
    bytes: int
    rows: int
    current: bool = False


@dataclass(frozen=True)
class Retired:
    """A compacted file (`name` a path) or a load's own parts (`name` its load id), replaced at `retired_at`."""

    name: str
    retired_at: float  # Unix seconds


@dataclass(frozen=True)
class Manifest:
    generation: int = 0
    settings: Settings = field(default_factory=Settings)
    covered: frozenset[str] = frozenset()
    files: dict[str, tuple[CompactedFile, ...]] = field(default_factory=dict)
    retired_files: tuple[Retired, ...] = ()
    retired_loads: tuple[Retired, ...] = ()
    indexed: bool = False  # `VERSIONS` indexes every covered load (always so once a format-2 compaction ran)

    @property
    def index_complete(self) -> bool:
        """Whether the `VERSIONS` files index every covered load (nothing covered: trivially)."""
        return self.indexed or not self.covered

    def table_files(self, table: str) -> tuple[CompactedFile, ...]:
        return self.files.get(table, ())

    def all_paths(self) -> set[str]:
        return {f.path for table_files in self.files.values() for f in table_files}

    def with_settings(self, settings: Settings) -> Manifest:
        return replace(self, settings=settings)

    def to_json(self) -> str:
        data = {
            "format": FORMAT_VERSION,
            "generation": self.generation,
            "indexed": self.indexed,
            "settings": {"auto": self.settings.auto, "keep_superseded": self.settings.keep_superseded,
                         "grace_seconds": self.settings.grace_seconds},
            "covered": sorted(self.covered),
            "files": {table: [_file_json(f) for f in table_files]
                      for table, table_files in sorted(self.files.items()) if table_files},
            "retired_files": [{"name": r.name, "retired_at": r.retired_at} for r in self.retired_files],
            "retired_loads": [{"name": r.name, "retired_at": r.retired_at} for r in self.retired_loads],
        }
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.get("format") not in READABLE_FORMATS:
            raise ManifestError(f"unknown manifest format {data.get('format')!r}")
        settings = data["settings"]
        return cls(
            generation=int(data["generation"]),
            settings=Settings(auto=bool(settings["auto"]), keep_superseded=bool(settings["keep_superseded"]),
                              grace_seconds=float(settings["grace_seconds"])),
            covered=frozenset(str(load_id) for load_id in data["covered"]),
            files={str(table): tuple(CompactedFile(str(f["path"]), int(f["bytes"]), int(f["rows"]),
                                                   current=f.get("current") is True) for f in listed)
                   for table, listed in data["files"].items()},
            retired_files=tuple(Retired(str(r["name"]), float(r["retired_at"])) for r in data["retired_files"]),
            retired_loads=tuple(Retired(str(r["name"]), float(r["retired_at"])) for r in data["retired_loads"]),
            indexed=bool(data.get("indexed", False)),
        )


def _file_json(f: CompactedFile) -> dict[str, object]:
    data: dict[str, object] = {"path": f.path, "bytes": f.bytes, "rows": f.rows}
    if f.current:  # only when set: a manifest without flags reads as it did
        data["current"] = True
    return data


def compacted_dir(root: Path) -> Path:
    return root / COMPACTED_DIR


def manifest_path(root: Path) -> Path:
    return compacted_dir(root) / MANIFEST_FILE


def read_manifest(root: Path) -> Manifest:
    """The landing's manifest; an empty one (nothing compacted, default settings) when there is none."""
    path = manifest_path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Manifest()
    try:
        return Manifest.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(f"cannot read the compaction manifest {path}: {exc}") from exc


def write_manifest(root: Path, manifest: Manifest) -> Path:
    """Replace the manifest atomically: the commit of a compaction (callers hold `leases.folder_lock`)."""
    return files.write_text_atomically(manifest_path(root), manifest.to_json(), tag="compact")
