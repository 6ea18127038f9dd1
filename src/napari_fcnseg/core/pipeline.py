"""Run a generator in a background thread, a few events ahead of its consumer.

Used to overlap a device's work with the host's: while the consumer turns one slice's
probabilities into labels and writes them, the producer already runs the next slice's forward
passes. The events arrive in the producer's order; exceptions are raised in the consumer, with
their own type; closing the consumer stops the producer at its next event and waits for it, so
no thread outlives the generator. A bounded queue keeps at most ``depth`` events waiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

T = TypeVar("T")

#: How often a blocked producer checks whether the consumer has gone (seconds).
_POLL = 0.05


class _Done:
    pass


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def in_background(events: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """Yield the items of ``events``, computed in a background thread up to ``depth`` ahead."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    waiting: queue.Queue[T | _Done | _Failed] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: T | _Done | _Failed) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for event in events:
                if not put(event):
                    break
            else:
                put(_Done())
                return
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failed(error))
            return
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="fcnseg-pipeline", daemon=True)
    worker.start()
    try:
        while True:
            item = waiting.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
