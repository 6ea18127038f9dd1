"""in_background: order, errors, early close and the bound on how far it runs ahead."""

from __future__ import annotations

import threading
import time

import pytest

from napari_fcnseg.core.pipeline import in_background


def _running() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "fcnseg-pipeline"]


def test_items_arrive_in_order():
    assert list(in_background(iter(range(50)), depth=3)) == list(range(50))
    assert not _running()


def test_an_error_is_raised_in_the_consumer_with_its_own_type():
    def failing():
        yield 1
        raise KeyError("broken")

    got = []
    with pytest.raises(KeyError, match="broken"):
        for item in in_background(failing()):
            got.append(item)
    assert got == [1]
    assert not _running()


def test_closing_stops_the_producer_and_runs_its_cleanup():
    produced, cleaned = [], []

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            cleaned.append(True)

    job = in_background(endless(), depth=2)
    assert next(job) == 0
    time.sleep(0.2)  # give the producer the chance to run ahead as far as it may
    job.close()
    assert cleaned == [True]
    assert not _running()
    # One consumed, two waiting in the queue, one blocked on the full queue: never more.
    assert len(produced) <= 4


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        next(in_background(iter([1]), depth=0))
