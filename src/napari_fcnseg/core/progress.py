"""Progress events yielded by the long-running core generators.

Long work (inference on a stack, CRF refinement, training, export) is written as a generator
that yields :class:`Progress` and *returns* its result. The CLI wraps it in tqdm, the widgets
run it in a napari worker, and tests drive it directly; closing the generator stops the work at
the next yield.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long job.

    Attributes
    ----------
    step
        Units of work done so far (tiles, slices, training steps, ...).
    total
        Units of work in the whole job (0 when unknown).
    message
        Short human-readable description of the current stage.
    info
        Extra figures, e.g. ``{"loss": 0.31, "val_iou": 0.82}`` during training.
    """

    step: int
    total: int
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Fraction of the job done, in [0, 1] (0 when the total is unknown)."""
        return min(1.0, self.step / self.total) if self.total else 0.0


def run_to_completion(
    job: Generator[Any, None, T], on_event: Callable[[Any], None] | None = None
) -> T:
    """Drive a core generator to its end and return its result.

    Parameters
    ----------
    job
        A generator that yields progress events and returns a result.
    on_event
        Called with every yielded event (e.g. to update a progress bar).
    """
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)
