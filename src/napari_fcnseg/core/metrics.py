"""Overlap scores between predicted and reference labels."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def iou_and_dice(prediction: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """IoU and Dice of two boolean masks (1.0 for both when both are empty)."""
    prediction = np.asarray(prediction, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    if prediction.shape != reference.shape:
        raise InputError(
            f"prediction shaped {prediction.shape} and labels shaped {reference.shape} differ; "
            "the labels must have the image's spatial shape"
        )
    inter = np.logical_and(prediction, reference).sum(dtype=np.int64)
    union = np.logical_or(prediction, reference).sum(dtype=np.int64)
    total = prediction.sum(dtype=np.int64) + reference.sum(dtype=np.int64)
    if union == 0:
        return 1.0, 1.0
    return float(inter / union), float(2 * inter / total)


def foreground_scores(
    prediction: np.ndarray, reference: np.ndarray, num_classes: int | None = None
) -> dict[str, float]:
    """Binary foreground (label > 0) IoU and Dice, and the mean IoU over the reference classes.

    When the reference uses labels the model does not have (``>= num_classes``, e.g. a
    4-class annotation scored against a foreground/background model), the class IoU would
    compare unrelated classes: it is then NaN and only the foreground scores are meaningful.
    """
    iou, dice = iou_and_dice(prediction > 0, reference > 0)
    if num_classes is not None and reference.size and int(reference.max()) >= num_classes:
        return {"iou": iou, "dice": dice, "class_iou": float("nan")}
    classes = [int(c) for c in np.unique(reference) if c > 0]
    per_class = [iou_and_dice(prediction == c, reference == c)[0] for c in classes]
    return {
        "iou": iou,
        "dice": dice,
        "class_iou": float(np.mean(per_class)) if per_class else iou,
    }
