"""The Parquet landing on object storage (`--out s3://bucket/prefix`): one home for the I/O that differs.

A landing root is a local folder (`pathlib.Path`, handled exactly as before: no fsspec on that path) or
an `ObjectPath`, a folder URL on a file system fsspec resolves (`s3://...` through s3fs, `memory://...`).
An `ObjectPath` offers the few `Path` operations the landing uses (`/`, `name`, `exists`, `glob`,
`unlink`, `as_posix`), so `warehouse/landing.py`, `streams.py`, `recovery.py` and `views.read_layout`
handle both the same way; what must differ goes through the functions below.

Visibility on object storage, which has no rename: a write is one PUT of the whole object (an object is
whole or absent), and a load's `loads/<load_id>.parquet` object, written last, commits it, as it does
locally (`views.read_layout` reads only the parts of loads with a `loads` row). So a crashed load leaves
no object a reader picks up, and nothing needs a temporary name.

Credentials and the endpoint come from the environment only (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_PROFILE`, read by
botocore under s3fs): never from a parameter, and no URL with credentials in it is accepted.
DuckDB reads the objects through the same fsspec file system (`register`), not through an extension.
"""

from __future__ import annotations

import errno
import fnmatch
import io
import os
import re
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import files

if TYPE_CHECKING:
    import duckdb
    from fsspec import AbstractFileSystem

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class ObjectStoreError(ValueError):
    """An object-store URL that cannot be used (unknown scheme, credentials in it, no bucket)."""


class ObjectStoreUnreachable(OSError):
    """The object store does not answer, refuses the credentials, or has no such bucket: nothing was written."""


def is_url(value: str) -> bool:
    """Whether `value` names an object-store folder (`scheme://...`) rather than a local path."""
    return bool(_SCHEME.match(value)) and not value.startswith("file://")


class ObjectPath:
    """A file or folder on an object store, named by its URL (`s3://bucket/prefix/runs/x.parquet`)."""

    def __init__(self, url: str, fs: AbstractFileSystem | None = None) -> None:
        self.url = url.rstrip("/")
        self._fs = fs

    @cached_property
    def fs(self) -> AbstractFileSystem:
        if self._fs is None:
            self._fs = filesystem(self.url)
        return self._fs

    def __truediv__(self, name: str) -> ObjectPath:
        return ObjectPath(f"{self.url}/{name}", self._fs)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectPath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.url.rsplit("/", 1)[0], self._fs)

    def as_posix(self) -> str:
        return self.url

    def exists(self) -> bool:
        return bool(self.fs.exists(self.url))

    def is_dir(self) -> bool:
        """Whether any object lies under this prefix (an object store has no empty folders)."""
        return bool(self.names())

    def names(self, prefix: str = "") -> list[str]:
        """The names of the entries right under this folder that begin with `prefix`; [] when there are none.

        On S3 the prefix is filtered by the server (one load's parts, not the listing of every load's).
        """
        try:
            if prefix and self.url.startswith(("s3://", "s3a://")):
                listed = self.fs.find(self.url, maxdepth=1, prefix=prefix, withdirs=True)
            else:
                listed = self.fs.ls(self.url, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        found = (str(key).rstrip("/").rsplit("/", 1)[-1] for key in listed)
        return [name for name in found if name.startswith(prefix)]

    def glob(self, pattern: str) -> list[ObjectPath]:
        """The entries matching `pattern`, one `*`-pattern per level (`*.parquet`, `*/.x*.tmp`)."""
        head, _, rest = pattern.partition("/")
        found = [self / name for name in self.names() if fnmatch.fnmatchcase(name, head)]
        if not rest:
            return found
        return [match for folder in found for match in folder.glob(rest)]

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.url)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: an object store has no folders (a write makes the prefix)."""

    def read_text(self, encoding: str = "utf-8") -> str:
        with self.fs.open(self.url, "rb") as source:
            return bytes(source.read()).decode(encoding)


Root = Path | ObjectPath
"""A landing root, or a file under one: a local path, or an object-store URL."""


def filesystem(url: str) -> AbstractFileSystem:
    """The fsspec file system of `url`, configured from the environment only; a clear error for a bad URL."""
    import fsspec
    from fsspec.core import split_protocol

    protocol, rest = split_protocol(url)
    if not protocol or not rest or not rest.strip("/"):
        raise ObjectStoreError(f"{url!r} names no bucket or folder: use SCHEME://BUCKET/PREFIX")
    if "@" in rest.split("/", 1)[0]:
        raise ObjectStoreError("an object-store URL must not carry credentials: set them in the environment "
                               "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError) as exc:
        raise ObjectStoreError(f"cannot use {protocol}:// URLs here ({exc}); for s3:// install "
                               "piper-etl[s3]") from None
    # Nothing but the environment configures it: botocore (under s3fs 2026.9) reads the credentials, the
    # region and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 itself. No listing cache: other processes (the
    # Dask workers) write the same prefix, and a cached listing would hide their parts.
    options: dict[str, Any] = {"use_listings_cache": False} if protocol in ("s3", "s3a") else {}
    fs: AbstractFileSystem = cls(**options)
    return fs


def check_reachable(root: ObjectPath) -> None:
    """Fail before any request to the API when the store cannot be written: no bucket, no access, no answer."""
    scheme, _, rest = root.url.partition("://")
    bucket = f"{scheme}://{rest.split('/', 1)[0]}"
    try:
        found = root.fs.exists(bucket) and root.fs.isdir(bucket)
    except OSError:
        raise
    except Exception as exc:  # botocore's own errors (no credentials, endpoint unreachable) are no OSError
        raise ObjectStoreUnreachable(f"cannot reach {bucket}: {type(exc).__name__}: {exc}") from None
    if not found:
        raise ObjectStoreUnreachable(errno.ENOENT, "no such bucket", bucket)


def landing_root(value: str | Path) -> Root:
    """A landing root from its text (a `LoadTarget.landing_root`, a manifest's): a URL or a local path."""
    text = str(value)
    return ObjectPath(text) if is_url(text) else Path(text)


def under(out_dir: Path, landing_root_text: str) -> Root:
    """Where a manifest's landing root is: an object-store URL as it is, else relative to `out_dir`."""
    return ObjectPath(landing_root_text) if is_url(landing_root_text) else out_dir / landing_root_text


def write_atomically(path: Root, write: Callable[[BinaryIO], None], *, tag: str = "",
                     sync_folder: bool = True) -> Root:
    """`files.write_atomically` locally; on an object store the whole object in one PUT (whole or absent)."""
    if isinstance(path, Path):
        return files.write_atomically(path, write, tag=tag, sync_folder=sync_folder)
    buffer = io.BytesIO()
    write(buffer)  # a failure (or a kill) here has sent nothing
    path.fs.pipe_file(path.url, buffer.getvalue())
    return path


def write_text(path: Root, text: str, *, tag: str = "") -> Root:
    data = text.encode("utf-8")

    def write(sink: BinaryIO) -> None:
        sink.write(data)

    return write_atomically(path, write, tag=tag)


def fsync_folder(folder: Root) -> None:
    """Make the renames in a local folder durable; nothing to do on an object store (no renames)."""
    if isinstance(folder, Path):
        files.fsync_folder(folder)


def read_table(path: Root, columns: list[str] | None = None) -> pa.Table:
    if isinstance(path, Path):
        return pq.read_table(path, columns=columns)
    with path.fs.open(path.url, "rb") as source:
        return pq.read_table(source, columns=columns)


def num_rows(path: Root) -> int:
    """The rows of one Parquet file, from its footer."""
    if isinstance(path, Path):
        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.fs.open(path.url, "rb") as source:
        return int(pq.ParquetFile(source).metadata.num_rows)


def names(folder: Root, prefix: str = "") -> list[str]:
    """The entry names of a folder beginning with `prefix` ([] when it does not exist): `os.scandir` locally,
    one listing remotely."""
    if isinstance(folder, ObjectPath):
        return folder.names(prefix)
    try:
        return [entry.name for entry in os.scandir(folder) if entry.name.startswith(prefix)]
    except FileNotFoundError:
        return []


def register(con: duckdb.DuckDBPyConnection, root: Root) -> None:
    """Let `con` read the files under `root` by their URLs (`read_parquet(['s3://...'])`); locally a no-op.

    DuckDB asks for a file's details (a HEAD request on S3) each time a query opens it, and the views
    name each file several times; so `con` reads through a file system that remembers the details of
    the objects that never change once written (`immutable`), for the whole process.
    """
    if isinstance(root, ObjectPath):
        protocol = root.url.split("://", 1)[0]
        if protocol not in {str(name) for name in con.list_filesystems()}:
            con.register_filesystem(_reading_filesystem(root.fs))


PRICES_OBJECT = "/token_prices/token_prices.parquet"
"""The one Parquet object of a landing that is replaced in place (the price list, `warehouse/pricing.py`)."""
_DETAILS_KEPT = 100_000


def immutable(path: str) -> bool:
    """Whether the object at `path` never changes once written: every Parquet object of a landing (a
    load's parts and `loads` row, compacted files: each written once under a name no other write uses),
    but the price list."""
    return path.endswith(".parquet") and not path.endswith(PRICES_OBJECT)


class _RemembersDetails:
    """Mixed into an async fsspec file system: `_info` of an `immutable` object is asked once (then kept)."""

    _details: dict[str, dict[str, Any]]

    async def _info(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        plain = not kwargs.get("refresh") and kwargs.get("version_id") is None
        key = str(self._strip_protocol(path))  # type: ignore[attr-defined]
        if not (plain and immutable(key)):
            return await super()._info(path, *args, **kwargs)  # type: ignore[misc, no-any-return]
        found = self._details.get(key)
        if found is None:
            found = await super()._info(path, *args, **kwargs)  # type: ignore[misc]
            if len(self._details) >= _DETAILS_KEPT:
                self._details.clear()
            self._details[key] = found
        return dict(found)


_READING: dict[tuple[type, str], AbstractFileSystem] = {}


def _reading_filesystem(fs: AbstractFileSystem) -> AbstractFileSystem:
    """`fs`'s twin for DuckDB's reads, remembering the details of immutable objects (one per process and kind)."""
    from fsspec.asyn import AsyncFileSystem

    if not isinstance(fs, AsyncFileSystem):
        return fs
    key = (type(fs), repr(sorted(fs.storage_options.items())))
    reading = _READING.get(key)
    if reading is None:
        cls = type(f"Reading{type(fs).__name__}", (_RemembersDetails, type(fs)), {})
        reading = cls(**fs.storage_options, skip_instance_cache=True)
        reading._details = {}
        _READING[key] = reading
    return reading


def state_folder(url: str, env: dict[str, str] | None = None) -> Path:
    """The local folder of an object-store landing's load state (leases, the sequence) without `--database`.

    `$XDG_STATE_HOME/piper-etl/<url as a name>`, else `~/.local/state/piper-etl/<url as a name>`.
    """
    env = dict(os.environ) if env is None else env
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", url.rstrip("/"))
    return files.xdg_dir("XDG_STATE_HOME", ".local/state", env) / "piper-etl" / name


def upload(finished: Path, target: ObjectPath) -> None:
    """Make the finished local file `finished` the object `target`: whole or absent (one PUT; a file over
    s3fs's 100 MB threshold goes as a multipart upload, which is invisible until its last request)."""
    target.fs.put_file(str(finished), target.url)


def listing(folder: ObjectPath) -> dict[ObjectPath, float]:
    """Every object under `folder` (at any depth), with its last-modified time in Unix seconds: one paged LIST."""
    try:
        found = folder.fs.find(folder.url, detail=True)
    except FileNotFoundError:
        return {}
    scheme = folder.url.split("://", 1)[0]
    listed: dict[ObjectPath, float] = {}
    for key, info in found.items():
        if info.get("type") == "directory":
            continue
        modified = info.get("LastModified") or info.get("mtime") or info.get("created")
        stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
        url = str(key) if "://" in str(key) else f"{scheme}://{key}"
        listed[ObjectPath(url, folder.fs)] = stamp
    return listed


def remove(paths: list[ObjectPath]) -> int:
    """Delete these objects (batched: one request per 1,000 on S3); how many were asked. Missing ones are no error."""
    if not paths:
        return 0
    paths[0].fs.rm([path.url for path in paths])
    return len(paths)
