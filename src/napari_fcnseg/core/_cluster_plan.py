"""What a cluster run is told (:class:`PredictSettings`) and learns per file (:class:`FilePlan`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .predict import DEFAULT_BATCH, DEFAULT_OVERLAP

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class PredictSettings:
    """How every slice is predicted (sent to the workers with each task).

    Attributes
    ----------
    model_path
        The model file (on storage the workers can read).
    axes
        Axes of the inputs when their files do not say.
    tile
        Largest tile side; ``None`` picks the largest that fits each worker's free memory.
    overlap, batch, device
        As for :func:`~.predict.predict_slices`.
    crf, crf_iterations
        Refine every slice with the dense CRF, with this many mean-field iterations.
    fill_holes
        Fill the holes of the foreground (``None``: as the model's file says).
    torch_threads
        Intra-op threads of torch on each worker (``None``: leave the worker's setting).
    """

    model_path: str
    axes: str | None = None
    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP
    batch: int = DEFAULT_BATCH
    device: str = "cpu"
    crf: bool = False
    crf_iterations: int = 5
    fill_holes: bool | None = None
    torch_threads: int | None = None


@dataclass(frozen=True)
class FilePlan:
    """What the client needs to know about one input before its slices are spread out."""

    spatial_shape: tuple[int, ...]
    depth: int
    bounds: tuple[np.ndarray, np.ndarray]
    tile: int
    spacing: tuple[float, ...] | None
