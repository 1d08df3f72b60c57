"""One error tree for the whole command: each class carries its exit status, lower layers map once."""

from __future__ import annotations

import errno
import re

import duckdb
import pytest

from connector.errors import PiperAuthError, PiperConfigError, PiperError, PiperStopLoad, PiperUnreachable
from flows import errors
from flows.errors import (
    Interrupted,
    LoadFailed,
    OutputClosed,
    PiperEtlError,
    PrefectUnavailable,
    TokenRefused,
    UsageError,
    WarehouseBusy,
    WriteError,
    translate,
)
from warehouse.pricing import PricingError
from warehouse.reader import NoOutputError
from warehouse.snapshot import SnapshotError
from warehouse.store import WarehouseLocked


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (PiperConfigError("no org id"), UsageError, 2),
        (PricingError("pricing file p.toml is not valid TOML"), UsageError, 2),
        (NoOutputError("nothing to read in out"), UsageError, 2),
        (PiperAuthError(401), TokenRefused, 3),
        (PiperUnreachable("https://api.letpiper.com", "connection refused"), LoadFailed, 1),
        (PiperStopLoad("the API answers only errors"), LoadFailed, 1),
        (PiperError("anything else of the connector"), LoadFailed, 1),
        (WarehouseLocked("out/piper.duckdb is locked by another process after waiting 1 s"), WarehouseBusy, 1),
        (SnapshotError("out/piper.duckdb has a write-ahead log"), WriteError, 1),
        (OSError(errno.ENOSPC, "No space left on device", "out/parquet"), WriteError, 1),
        (PermissionError(errno.EACCES, "Permission denied", "out"), WriteError, 1),
        (duckdb.IOException("could not write"), WriteError, 1),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), OutputClosed, 0),
        (KeyboardInterrupt(), Interrupted, 130),
        (UsageError("already ours"), UsageError, 2),
        (PrefectUnavailable("http://127.0.0.1:9/api", "All connection attempts failed"), PrefectUnavailable, 4),
    ],
)
def test_lower_layer_errors_map_to_one_class_and_status(error: BaseException, kind: type, status: int) -> None:
    translated = translate(error)
    assert type(translated) is kind
    assert translated is not None and translated.exit_status == status


@pytest.mark.parametrize("error", [ValueError("a bug"), RuntimeError("a bug"), AssertionError(), SystemExit(3)])
def test_an_unanticipated_error_is_not_translated_so_its_traceback_shows(error: BaseException) -> None:
    assert translate(error) is None


def test_the_docstring_draws_every_class_with_its_status() -> None:
    drawn = {
        match[1]: int(match[2])
        for match in re.finditer(r"[├└]── (\w+)\s+(\d+)", errors.__doc__ or "")
    }
    classes = {
        name: value.exit_status
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, PiperEtlError) and value is not PiperEtlError
    }
    assert drawn == classes


def test_what_a_person_reads() -> None:
    assert WriteError("cannot write the output (No space left on device): out").lines("load") == [
        "piper-etl load: error: cannot write the output (No space left on device): out",
        "  earlier loads are intact; fix the cause and rerun",
    ]
    assert WarehouseBusy("out/piper.duckdb is locked").lines("load")[1] == (
        "  the fetched data is kept in the Parquet landing files; the next load merges it"
    )
    assert Interrupted().lines("load") == ["piper-etl: interrupted; committed loads are intact, rerun to finish"]
    assert OutputClosed().lines("report") == []
    assert LoadFailed().lines("load") == [], "a load's summary has said it already"
    assert PrefectUnavailable("https://user:secret@prefect.example.com/api", "timed out").lines("load") == [
        "piper-etl load: error: cannot reach the Prefect server at https://prefect.example.com/api "
        "(PREFECT_API_URL): timed out",
        "  start it (prefect server start), or load without it: unset PREFECT_API_URL or pass --engine local",
    ]
