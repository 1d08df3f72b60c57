"""Load settings: plain values that are safe to log and to pass as Prefect parameters (never the token).

`LoadSettings.resolve` is the one place where flags, environment variables and defaults meet: the CLI
passes its flags, the Prefect flow its parameters (the same names), both get the same object, and the
local engine and the flow read only that. An invalid value is a `SettingError` that names the setting
as its caller spells it: `--chunk-size` on the command line, `chunk_size` in a flow run.

The default output folder is the user's data folder (`default_out_dir`), never the working directory:
run from a checkout, `./warehouse` was the `warehouse/` package itself.

`out_dir` may be an object-store URL (`s3://bucket/prefix`, docs/scale-out.md), kept as text (`out_url`):
the load's local state is then in `state_dir` (`database`'s folder, else `objstore.state_folder`), the
default format is `parquet`, and `duckdb` or `both` need `database`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from connector.client import HTTP_CLIENTS, HttpClient
from connector.errors import TOKEN_ENV, PiperConfigError
from warehouse import files, objstore
from warehouse.load import FORMATS, OutputFormat
from warehouse.pricing import PriceList, PricingError, read_pricing
from warehouse.store import DATABASE_FILE, DEFAULT_STORAGE_VERSION, check_storage_version

__all__ = [
    "DEFAULT_BASE_URL", "ENVIRONMENT", "FORMATS", "ConflictingSettings", "HttpClient", "LoadSettings", "OutputFormat",
    "SettingError", "SyncOptions", "configured_out_dir", "default_out_dir", "out_root",
]

DEFAULT_BASE_URL = "https://api.letpiper.com"
TOKEN_BLOCK = "piper-api-token"
ENVIRONMENT = {
    "org_id": "PIPER_ORG_ID",
    "base_url": "PIPER_BASE_URL",
    "out_dir": "PIPER_OUT_DIR",
    "pricing_file": "PIPER_PRICING_FILE",
    "judge_model": "PIPER_JUDGE_MODEL",
}
"""The settings an environment variable provides when no flag or parameter does."""


def default_out_dir(env: Mapping[str, str] | None = None) -> Path:
    """The output folder when neither a flag, a parameter nor PIPER_OUT_DIR names one.

    `$XDG_DATA_HOME/piper-etl/warehouse`, else `~/.local/share/piper-etl/warehouse` (the XDG base
    directory rule: a relative XDG_DATA_HOME is ignored). Never inside the source tree or a package.
    """
    env = os.environ if env is None else env
    return files.xdg_dir("XDG_DATA_HOME", ".local/share", env) / "piper-etl" / "warehouse"


def configured_out_dir(env: Mapping[str, str] | None = None) -> objstore.Root:
    """The output folder of a command given no `--out`: PIPER_OUT_DIR (a folder or an object-store URL, kept
    whole: `Path` would fold its `//`), else `default_out_dir`."""
    env = os.environ if env is None else env
    named = env.get(ENVIRONMENT["out_dir"], "").strip()
    return _root_of(named) if named else default_out_dir(env)


def out_root(value: str) -> objstore.Root:
    """The output folder a reading command (`report`, `sql`, `check`, the regression gate) is given: a local
    folder, or an object-store URL whose Parquet files it reads. A URL fsspec cannot use is a usage error."""
    root = _root_of(value.strip())
    if isinstance(root, objstore.ObjectPath):
        try:
            root.fs  # noqa: B018  (resolving the file system checks the URL, before anything is read)
        except objstore.ObjectStoreError as exc:
            raise PiperConfigError(str(exc)) from None
    return root


def _root_of(text: str) -> objstore.Root:
    """An output folder from its text: an object-store URL as it is (no trailing /), else a path with ~ expanded."""
    return objstore.ObjectPath(text.rstrip("/")) if objstore.is_url(text) else Path(text).expanduser()


class SettingError(PiperConfigError):
    """A setting has an unusable value; the message names it as the caller spells it.

    `setting` is the field name (a flow parameter's name); `str(error)` reads `NAME PROBLEM`, where
    NAME is the flow parameter by default and the flag after `LoadSettings.resolve(..., names=...)`.
    """

    def __init__(self, setting: str, problem: str, *, spelled: str | None = None) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{spelled or setting} {problem}")

    def spelled_as(self, names: Mapping[str, str]) -> SettingError:
        """The same error naming the setting as `names` spells it (a flag, for the command line)."""
        return SettingError(self.setting, self.problem, spelled=names.get(self.setting, self.setting))


class ConflictingSettings(SettingError):
    """Two settings that exclude each other were both given; the message names both as the caller spells them."""

    def __init__(self, setting: str, other: str, why: str, *, spelled: str | None = None,
                 other_spelled: str | None = None) -> None:
        self.other, self.why = other, why
        super().__init__(setting, f"and {other_spelled or other} exclude each other: {why}", spelled=spelled)

    def spelled_as(self, names: Mapping[str, str]) -> SettingError:
        return ConflictingSettings(self.setting, self.other, self.why, spelled=names.get(self.setting, self.setting),
                                   other_spelled=names.get(self.other, self.other))


MAX_DASK_WORKERS = 1024
DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
"""The communication protocols of a Dask scheduler address (`distributed.comm`)."""


@dataclass(frozen=True)
class LoadSettings:
    """Where to load from and to, and how hard to push. Holds no secret."""

    org_id: str
    base_url: str = DEFAULT_BASE_URL
    out_dir: Path | str = field(default_factory=default_out_dir)  # str: an object-store URL
    concurrency: int = 16
    max_retries: int = 5
    chunk_size: int = 500
    format: OutputFormat | None = None  # None: both, or parquet with an object-store out_dir (`output`)
    refetch: bool = False
    lock_timeout: float = 30.0
    http_client: HttpClient = "aiohttp"
    pricing_file: str | None = None  # TOML of judge token prices; None keeps the prices stored earlier
    judge_model: str | None = None  # the judge model whose price costs the runs
    sessions_per_task: int = 5000  # the Prefect engine's sessions per fetch task
    max_consecutive_failures: int = 50  # the circuit breaker (connector.retry.CircuitBreaker); 0 turns it off
    circuit_breaker_seconds: float = 30.0  # ... and the least time without a usable answer before it trips
    with_agent_usage: bool = False  # also fetch each fetched session's events into `agent_usage`
    duckdb_storage_version: str = DEFAULT_STORAGE_VERSION  # of the DuckDB files a load creates (docs/bi.md)
    dask_address: str | None = None  # a running Dask scheduler the Prefect engine's fetch tasks run on
    dask_workers: int | None = None  # ... or a LocalCluster of this many worker processes (flows/scale.py)
    database: Path | None = None  # the local DuckDB file of an object-store out_dir (else OUT/piper.duckdb)

    def __post_init__(self) -> None:
        if not self.org_id:
            raise SettingError("org_id", "is empty")
        if self.format is None:
            object.__setattr__(self, "format", "parquet" if self.out_url is not None else "both")
        if self.format not in FORMATS:
            raise SettingError("format", f"must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.concurrency < 1 or self.concurrency > 1024:
            raise SettingError("concurrency", f"must be between 1 and 1024, not {self.concurrency}")
        if self.max_retries < 0:
            raise SettingError("max_retries", f"must be 0 or more, not {self.max_retries}")
        if self.http_client not in HTTP_CLIENTS:
            raise SettingError("http_client", f"must be one of {', '.join(HTTP_CLIENTS)}, not {self.http_client!r}")
        if self.lock_timeout < 0:
            raise SettingError("lock_timeout", f"must be 0 or more seconds, not {self.lock_timeout}")
        if self.chunk_size < 1:
            raise SettingError("chunk_size", f"must be at least 1, not {self.chunk_size}")
        if self.max_consecutive_failures < 0:
            raise SettingError(
                "max_consecutive_failures", f"must be 0 (off) or more, not {self.max_consecutive_failures}"
            )
        if self.circuit_breaker_seconds < 0:
            raise SettingError("circuit_breaker_seconds", f"must be 0 or more, not {self.circuit_breaker_seconds}")
        if self.sessions_per_task < 1:
            raise SettingError("sessions_per_task", f"must be at least 1, not {self.sessions_per_task}")
        try:
            check_storage_version(self.duckdb_storage_version)
        except ValueError as exc:
            raise SettingError("duckdb_storage_version", str(exc)) from None
        self._check_dask()
        self._check_object_store()
        self.price_list()  # a bad pricing file is a usage error before any request, not after the fetch

    def _check_dask(self) -> None:
        if self.dask_address is not None and self.dask_workers is not None:
            raise ConflictingSettings("dask_address", "dask_workers",
                                      "one names a running Dask cluster, the other starts a local one: pass one")
        if self.dask_workers is not None and not 1 <= self.dask_workers <= MAX_DASK_WORKERS:
            raise SettingError("dask_workers", f"must be between 1 and {MAX_DASK_WORKERS}, not {self.dask_workers}")
        if self.dask_address is not None:
            address = self.dask_address.strip()
            scheme, found, rest = address.partition("://")
            if not address or any(c.isspace() for c in address) or (found and (scheme not in DASK_SCHEMES or not rest)):
                raise SettingError("dask_address", f"must be a Dask scheduler address such as tcp://HOST:8786, "
                                                   f"not {self.dask_address!r}")
            object.__setattr__(self, "dask_address", address)

    def _check_object_store(self) -> None:
        url = self.out_url
        if url is None:
            object.__setattr__(self, "out_dir", Path(self.out_dir))
            if self.database is not None:
                raise SettingError("database", "is for an object-store output (s3://BUCKET/PREFIX); a local output "
                                               "folder keeps piper.duckdb in it")
            return
        try:
            objstore.filesystem(url)  # the scheme is known and the URL carries no credentials
        except objstore.ObjectStoreError as exc:
            raise SettingError("out_dir", str(exc)) from None
        object.__setattr__(self, "out_dir", url.rstrip("/"))
        if self.database is not None:
            object.__setattr__(self, "database", Path(self.database).expanduser())
            if Path(self.database).name != DATABASE_FILE:  # the BI snapshot is published from OUT/piper.duckdb
                raise SettingError("database", f"must name a file called {DATABASE_FILE} (its folder holds the "
                                               f"load state and the BI snapshot, as a local out_dir does), not "
                                               f"{str(self.database)!r}")
        elif self.output != "parquet":
            raise SettingError("format", f"{self.output} needs a local DuckDB file with an object-store output: "
                                         "name it (--database, the flow's database), or write parquet only")

    @property
    def output(self) -> OutputFormat:
        """The stores the load writes (`format` made definite)."""
        return self.format or "both"

    @property
    def out_url(self) -> str | None:
        """The object-store folder (`s3://bucket/prefix`) the Parquet files land in, if `out_dir` is one."""
        return str(self.out_dir) if isinstance(self.out_dir, str) and objstore.is_url(self.out_dir) else None

    @property
    def state_dir(self) -> Path:
        """The local folder of the load's state and DuckDB: `out_dir`, or for an object store `database`'s folder,
        else a folder under ~/.local/state/piper-etl named from the URL (docs/scale-out.md)."""
        url = self.out_url
        if url is None:
            return Path(self.out_dir)
        return self.database.parent if self.database is not None else objstore.state_folder(url)

    @property
    def on_dask(self) -> bool:
        """Whether the Prefect engine's fetch tasks run on a Dask cluster."""
        return self.dask_address is not None or self.dask_workers is not None

    def price_list(self) -> PriceList | None:
        """The judge prices this load stores, or None to keep those stored by an earlier load."""
        return price_list(self.pricing_file, self.judge_model)

    @classmethod
    def resolve(
        cls,
        given: Mapping[str, object | None],
        env: Mapping[str, str] | None = None,
        *,
        names: Mapping[str, str] | None = None,
    ) -> LoadSettings:
        """Settings from flags or flow parameters (`given`; None = not given), else the environment, else defaults.

        `names` spells each setting in error messages as the caller knows it (the CLI: its flags); by
        default a setting is named by its field, which is the flow parameter's name.
        """
        env = os.environ if env is None else env
        names = names or {}
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise PiperConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        values = {name: value for name, value in given.items() if value is not None}
        for name, variable in ENVIRONMENT.items():
            if name not in values and env.get(variable, "").strip():
                values[name] = env[variable].strip()
        if "out_dir" in values and not objstore.is_url(str(values["out_dir"])):
            values["out_dir"] = Path(str(values["out_dir"])).expanduser()
        if "org_id" not in values:
            raise PiperConfigError(f"no org id: pass {names.get('org_id', 'org_id')} or set {ENVIRONMENT['org_id']}")
        try:
            return cls(**values)  # type: ignore[arg-type]
        except SettingError as exc:
            raise exc.spelled_as(names) from None

    def as_parameters(self) -> dict[str, object]:
        """The settings as JSON-safe values: the `loads` row's parameters and the flow's parameters."""
        values = asdict(self)
        values["out_dir"] = str(self.out_dir)
        values["database"] = None if self.database is None else str(self.database)
        return values


@dataclass(frozen=True)
class SyncOptions:
    """What a sync lists, on top of the load's settings: a full scan, and bounds on `created_at` (backfills)."""

    full_scan: bool = False
    since: datetime | None = None  # sessions created at or after it
    until: datetime | None = None  # sessions created before it

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise PiperConfigError(f"since ({self.since.isoformat()}) must be before until ({self.until.isoformat()})")

    @classmethod
    def parse(
        cls, *, full_scan: bool, since: str | None, until: str | None, names: tuple[str, str] = ("since", "until")
    ) -> SyncOptions:
        """Options from text (flags or flow parameters); `names` are what an error calls the two bounds."""
        return cls(full_scan, parse_instant(since, names[0]), parse_instant(until, names[1]))

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None

    def in_bounds(self, created_at: datetime | None) -> bool:
        """Whether a session created then is in the sync's range (an unknown time is: it costs a fetch at most)."""
        if created_at is None:
            return True
        return (self.since is None or created_at >= self.since) and (self.until is None or created_at < self.until)

    def as_parameters(self) -> dict[str, object]:
        return {
            "full_scan": self.full_scan,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def parse_instant(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or time as an aware UTC instant (no zone: UTC); a config error naming `name` otherwise."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PiperConfigError(
            f"{name} {value!r} is not an ISO 8601 date or time (for example 2026-11-01 or 2026-11-01T12:00:00Z)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def price_list(pricing_file: str | None, judge_model: str | None) -> PriceList | None:
    """The judge prices a pricing setting asks for; a config error (exit status 2) when it is unusable."""
    try:
        return read_pricing(pricing_file, judge_model)
    except PricingError as exc:
        raise PiperConfigError(str(exc)) from None


def token_from_env() -> str:
    """The API token from `PIPER_API_TOKEN`; a config error naming the variable when it is unset."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise PiperConfigError(f"no API token: set the {TOKEN_ENV} environment variable")
    return token
