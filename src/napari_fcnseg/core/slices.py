"""Label a stack one slice at a time: tiles -> probabilities -> optional CRF -> labels.

:func:`label_slices` is the per-slice job that ``fcnseg predict`` runs in its own process and
that every worker of a cluster run (:mod:`.cluster`) runs on its slices. Only one slice is read
and held at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .predict import (
    DEFAULT_BATCH,
    DEFAULT_OVERLAP,
    SlicePrediction,
    model_labels,
    predict_slices,
    prepare_image,
)
from .progress import Progress

if TYPE_CHECKING:
    import torch


log = logging.getLogger(__name__)


@dataclass
class SliceLabels:
    """Labels of one Z slice, shaped (Y, X), and its uncertainty when asked for."""

    index: int
    labels: np.ndarray
    #: Normalised entropy of the probabilities the labels come from (float32, (Y, X)).
    uncertainty: np.ndarray | None = None


def label_slices(
    model: Any,
    image: Any,
    *,
    axes: str | None = None,
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    batch: int = DEFAULT_BATCH,
    device: str | torch.device = "auto",
    crf: bool = False,
    crf_iterations: int = 5,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    slices: Sequence[int] | None = None,
    uncertainty: bool = False,
    fill_holes: bool | None = None,
) -> Generator[Progress | SliceLabels, None, None]:
    """Predict, optionally refine with the CRF, and label a stack one slice at a time.

    Yields :class:`Progress` and a :class:`SliceLabels` per slice, in order. The image may be a
    numpy, dask or zarr-backed dask array: only one slice is read and held at a time. The CRF
    runs per slice (2D), on that slice's pixels. With ``uncertainty`` each slice also carries
    the normalised entropy of its (refined) probabilities
    (:func:`~.uncertainty.entropy_uncertainty`). Labels are made as the model's file says
    (:func:`~.predict.model_labels`); ``fill_holes`` overrides its choice when not ``None``. See
    :func:`~.predict.predict_slices` for the other parameters.
    """
    from .crf import refine_with_crf
    from .uncertainty import entropy_uncertainty

    prepared = prepare_image(image, model.info.in_channels, axes) if crf else None
    for event in predict_slices(
        model,
        image,
        axes=axes,
        tile=tile,
        overlap=overlap,
        batch=batch,
        device=device,
        bounds=bounds,
        slices=slices,
    ):
        if isinstance(event, SlicePrediction):
            probs = event.probabilities
            if prepared is not None:
                pixels = np.asarray(prepared.stack[event.index])
                probs = refine_with_crf(pixels, probs, iterations=crf_iterations, device=device)
            unsure = entropy_uncertainty(probs) if uncertainty else None
            yield SliceLabels(
                event.index, model_labels(model.info, probs, fill_holes=fill_holes), unsure
            )
        else:
            yield event
