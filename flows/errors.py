"""Errors of the `piper-etl` command, each carrying the exit status the command ends with.

    PiperEtlError                 base class: `exit_status` and the `message` a person reads
    ├── UsageError            2   the command, a flag, a setting or a file it names is wrong; nothing was sent
    ├── LoadFailed            1   the load ended with sessions failed or rejected; the rest is committed
    │   ├── TokenRefused      3   the Piper API refused the token; what was fetched is committed
    │   └── SyncFailed        1   a sync flow ended so (or its listing is not proven complete), after its commit
    ├── WriteError            1   the output could not be written; earlier loads are intact
    │   └── WarehouseBusy     1   another process held piper.duckdb past --lock-timeout; the next load merges
    ├── PrefectUnavailable    4   the Prefect server (PREFECT_API_URL) does not answer; nothing was loaded
    ├── Interrupted         130   Ctrl-C; committed loads are intact
    └── OutputClosed          0   the reader of stdout closed it (`| head`); not a failure

Statuses group errors by what the caller does next: 1 rerun (the next load finishes the work), 2 fix
the command, 3 fix the token, 4 start the Prefect server or load without it (a scheduler may retry).
The lower layers cannot know these classes (connector and warehouse import nothing of flows), so
`translate` maps their errors once, at this boundary, and `flows.cli.main` prints and exits in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import duckdb

from connector.errors import PiperAuthError, PiperConfigError, PiperError
from warehouse.compacted import ManifestError
from warehouse.objstore import ObjectStoreError
from warehouse.pricing import PricingError
from warehouse.reader import NoOutputError
from warehouse.snapshot import SnapshotError
from warehouse.store import WarehouseLocked

if TYPE_CHECKING:
    from flows.pipeline import LoadSummary
    from flows.sync import SyncSummary

PROG = "piper-etl"


class PiperEtlError(Exception):
    """Base class of every error the command reports: it ends the command with `exit_status`."""

    exit_status = 1
    hints: tuple[str, ...] = ()

    def __init__(self, message: str | None, *, hints: Sequence[str] | None = None) -> None:
        super().__init__(message or "")
        self.message = message  # None: what went wrong was printed already (a load's summary)
        if hints is not None:
            self.hints = tuple(hints)

    def lines(self, command: str) -> list[str]:
        """What stderr shows: one error line naming the command, then what to do, indented."""
        if self.message is None:
            return []
        return [f"{PROG} {command}: error: {self.message}", *(f"  {hint}" for hint in self.hints)]


class UsageError(PiperEtlError):
    """A mistake in how the command was called, or in a setting or file it names."""

    exit_status = 2


class LoadFailed(PiperEtlError):
    """The load ended, committed, with sessions failed or rejected (or it stopped early)."""

    exit_status = 1

    def __init__(self, message: str | None = None, *, summary: LoadSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary

    @classmethod
    def of(cls, summary: LoadSummary) -> LoadFailed:
        """The error of a load whose summary was printed: the summary said it all."""
        kind = TokenRefused if summary.token_refused else LoadFailed
        return kind(summary=summary)


class TokenRefused(LoadFailed):
    """The Piper API refused the token (401) or its permissions (403); no more requests were sent."""

    exit_status = 3


class SyncFailed(LoadFailed):
    """The `sync_sessions` flow's error once its load is committed; it carries the sync's summary."""

    def __init__(self, message: str, *, sync_summary: SyncSummary) -> None:
        super().__init__(message, summary=sync_summary.load)
        self.sync_summary = sync_summary


class WriteError(PiperEtlError):
    """The output could not be written: disk full, a file where a folder should be, DuckDB failing."""

    exit_status = 1
    hints = ("earlier loads are intact; fix the cause and rerun",)


class WarehouseBusy(WriteError):
    """Another process kept piper.duckdb locked for longer than `--lock-timeout`."""

    hints = ("the fetched data is kept in the Parquet landing files; the next load merges it",)


class PrefectUnavailable(PiperEtlError):
    """`--engine prefect` and the Prefect server at PREFECT_API_URL cannot be reached."""

    exit_status = 4
    hints = ("start it (prefect server start), or load without it: unset PREFECT_API_URL or pass --engine local",)

    def __init__(self, api_url: str, reason: str) -> None:
        self.api_url = without_credentials(api_url)
        super().__init__(f"cannot reach the Prefect server at {self.api_url} (PREFECT_API_URL): {reason}")


class Interrupted(PiperEtlError):
    """Ctrl-C (SIGINT): whatever was committed before stays; the next load finishes the work."""

    exit_status = 130

    def __init__(self) -> None:
        super().__init__("interrupted")

    def lines(self, command: str) -> list[str]:
        return [f"{PROG}: interrupted; committed loads are intact, rerun to finish"]


class OutputClosed(PiperEtlError):
    """Whoever read stdout closed it early (`piper-etl report | head`): the command's reader is done."""

    exit_status = 0

    def __init__(self) -> None:
        super().__init__(None)


def translate(exc: BaseException) -> PiperEtlError | None:
    """Our error for an exception of a lower layer (or Python), or None when it was not anticipated.

    None means a bug: `main` lets it propagate, so its traceback is shown.
    """
    if isinstance(exc, PiperEtlError):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted()
    if isinstance(exc, PiperConfigError | PricingError | NoOutputError):
        return UsageError(str(exc))
    if isinstance(exc, PiperAuthError):
        return TokenRefused(str(exc))
    if isinstance(exc, PiperError):  # a stop (API unreachable, ...) that reached the top, or any other
        return LoadFailed(str(exc))
    if isinstance(exc, WarehouseLocked):
        return WarehouseBusy(str(exc))
    if isinstance(exc, BrokenPipeError):  # before OSError, of which it is one
        return OutputClosed()
    if isinstance(exc, OSError):
        return WriteError(_describe_os_error(exc))
    if isinstance(exc, ManifestError | ObjectStoreError):
        return WriteError(str(exc))
    if isinstance(exc, SnapshotError):
        return WriteError(f"cannot publish the snapshot: {exc}")
    if isinstance(exc, duckdb.Error):
        return WriteError(f"DuckDB failed on the output folder: {exc}")
    return None


def without_credentials(url: str) -> str:
    """`url` without a user name or password (PREFECT_API_URL may carry them)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _describe_os_error(exc: OSError) -> str:
    if not exc.strerror:
        return f"cannot write the output: {exc}"
    where = f": {exc.filename}" if exc.filename else ""
    return f"cannot write the output ({exc.strerror}){where}"
