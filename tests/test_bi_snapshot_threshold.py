"""Below `snapshot.COPY_BELOW_BYTES` the BI snapshot is published as a whole copy, keeping every promise."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import Cli, SimulatedPiper, load_args
from tests.test_bi_snapshot_incremental import ask, differences, start_reader, stop, whole_copies
from warehouse import snapshot


def test_a_small_database_is_copied_whole_and_a_reader_keeps_its_state(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(snapshot.COPY_BELOW_ENV, raising=False)
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    ids = piper.dataset.session_ids
    assert cli(*load_args(piper, out_dir, *ids[:5])).code == 0
    assert cli(*load_args(piper, out_dir, *ids[5:10])).code == 0
    whole_copies(caplog)
    reader = start_reader(snapshot.snapshot_path(out_dir))
    try:
        assert reader.stdout is not None
        held = reader.stdout.readline().split()
        for batch in (ids[10:15], ids[15:20], ids[:20]):
            assert cli(*load_args(piper, out_dir, "--refetch", *batch)).code == 0
            copies = whole_copies(caplog)
            assert len(copies) == 1 and f"is smaller than {snapshot.COPY_BELOW_BYTES / 2**20:.0f} MB" in copies[0]
            assert differences(out_dir) == []
            assert ask(reader) == held, "a reader of an older snapshot keeps its state"
    finally:
        stop(reader)


def test_the_threshold_can_be_lowered_so_that_a_small_database_updates_its_standby(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(snapshot.COPY_BELOW_ENV, "0")
    caplog.set_level(logging.INFO, logger=snapshot.__name__)
    ids = piper.dataset.session_ids
    for batch in (ids[:5], ids[5:10]):  # the two standbys do not exist yet: whole copies
        assert cli(*load_args(piper, out_dir, *batch)).code == 0
    whole_copies(caplog)
    assert cli(*load_args(piper, out_dir, *ids[10:15])).code == 0
    assert whole_copies(caplog) == []
    assert differences(out_dir) == []
    monkeypatch.setenv(snapshot.COPY_BELOW_ENV, "not a number")  # a tests' knob: never fails a load
    assert cli(*load_args(piper, out_dir, *ids[15:20])).code == 0
    assert differences(out_dir) == []
