"""Validation during training: whole images through the same tiled inference as users get."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..core.metrics import foreground_scores
from ..core.predict import model_labels, predict_probabilities
from ..core.progress import run_to_completion
from ..model.checkpoint import SegmentationModel
from ..model.combined import refine_with_model_crf
from .evidence import block_counts
from .holdout import block_side
from .samples import IGNORE_LABEL, PreparedSample, TrainingSample, sample_axes


def validate(
    model: SegmentationModel,
    samples: Sequence[TrainingSample],
    targets: Sequence[PreparedSample],
    device: torch.device,
    *,
    tile: int = 1024,
    with_crf: bool = False,
    block: int | None = None,
    as_seen: bool = False,
) -> dict[str, Any]:
    """Mean IoU and mean class IoU over ``samples``, on their annotated pixels.

    ``"iou"`` is the score checkpoints are selected by: the foreground IoU for a model of two
    classes; for more classes, the mean IoU of the classes above background (foreground alone
    would prefer a model that finds the egg chambers but mixes up their structures).

    Each image goes through :func:`~napari_fcnseg.core.predict.predict_probabilities` (so it is
    normalised exactly as at inference) and, with ``with_crf``, the model's CRF layer. Pixels
    whose target is :data:`IGNORE_LABEL` are left out. The model is left in eval mode. With
    ``block``, ``"blocks"`` holds the foreground intersection and union of every block of the
    annotated pixels (:func:`.evidence.block_counts`, all samples in turn; summed over the
    classes for more than two), ``block`` px or less on small images, as the hold-out cuts them
    (:func:`.holdout.block_side`). With ``as_seen`` the labels scored are made as the model's
    file says (:func:`~napari_fcnseg.core.predict.model_labels`), else the most probable class.
    """
    classes = model.info.num_classes > 2
    ious, class_ious, blocks = [], [], []
    for sample, prepared in zip(samples, targets, strict=True):
        image = np.asarray(sample.image)
        probs = run_to_completion(
            predict_probabilities(model, image, axes=sample_axes(image), tile=tile, device=device)
        )
        if with_crf:
            probs = refine_with_model_crf(model, image, probs, device=device)
        prediction = model_labels(model.info, probs) if as_seen else probs.argmax(axis=0)
        valid = prepared.target != IGNORE_LABEL
        if not valid.any():
            continue
        scores = foreground_scores(prediction[valid], prepared.target[valid])
        ious.append(scores["class_iou"] if classes else scores["iou"])
        class_ious.append(scores["class_iou"])
        if block is not None:
            side = block_side(prepared.target.shape, block)  # the hold-out's blocks
            blocks.append(block_counts(prediction, prepared.target, valid, side, classes=classes))
    counts = np.concatenate(blocks) if blocks else np.zeros((0, 2), dtype=np.int64)
    if not ious:
        return {"iou": float("nan"), "class_iou": float("nan"), "blocks": counts}
    return {"iou": float(np.mean(ious)), "class_iou": float(np.mean(class_ious)), "blocks": counts}
