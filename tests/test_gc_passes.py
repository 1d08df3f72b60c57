"""A load wakes the cycle collector less often, and leaves the process's GC settings as it found them."""

from __future__ import annotations

import gc

from flows.pipeline import fewer_gc_passes


def test_threshold_is_raised_during_the_load_and_restored_after() -> None:
    before = gc.get_threshold()
    with fewer_gc_passes(50_000):
        assert gc.get_threshold() == (max(50_000, before[0]), *before[1:])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_settings_are_restored_when_the_load_fails() -> None:
    before = gc.get_threshold()
    try:
        with fewer_gc_passes():
            raise RuntimeError("load failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_cycles_made_during_the_load_are_still_collected() -> None:
    class Node:
        other: object = None

    with fewer_gc_passes():
        first, second = Node(), Node()
        first.other, second.other = second, first
        del first, second
        assert gc.collect() >= 2
