"""Which pixels and slices a person changed in a label image, relative to the model's prediction.

When the plugin writes a prediction into a Labels layer it keeps a :class:`PredictionRecord`: a
copy of the labels as predicted (the *snapshot*), the class probabilities, and the slices a
person has marked as checked. Diffing the layer's current labels against the snapshot tells
which pixels were corrected (:func:`changed_mask`), which slices (:func:`changed_slices`), and
so what to fine-tune on and export (:func:`annotated_slices`). It also tells whether a layer may
be overwritten without losing work (:func:`is_edited`).

Everything here is numpy only; the widgets keep the record in the layer's ``metadata``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.labels import check_labels_and_probabilities

__all__ = [
    "AnnotatedSlice",
    "PredictionRecord",
    "annotated_slices",
    "changed_mask",
    "changed_slices",
    "is_edited",
    "soft_labels",
]


@dataclass
class PredictionRecord:
    """What the model predicted for a label image.

    Attributes
    ----------
    prediction
        Labels as predicted (a private copy), shaped (Y, X) or (Z, Y, X).
    probabilities
        (K, Y, X) or (K, Z, Y, X) float32 class probabilities, or ``None``.
    image_name
        Name of the image the labels belong to.
    model
        What made the prediction: a store version (``"v002"``), a file path or ``"default"``.
    class_names
        Names of the K classes (background first).
    predicted_slices
        Z indices that hold a prediction (all of them for a 2D image or a whole-stack run).
    checked
        Z indices a person marked as checked: their labels are right as they are.
    fill_holes
        The labels had the holes of their foreground filled (:mod:`.holes`); a refinement of
        them does the same.
    """

    prediction: np.ndarray
    probabilities: np.ndarray | None
    image_name: str = ""
    model: str = ""
    class_names: list[str] = field(default_factory=list)
    predicted_slices: set[int] = field(default_factory=set)
    checked: set[int] = field(default_factory=set)
    fill_holes: bool = False

    @classmethod
    def from_prediction(
        cls,
        labels: np.ndarray,
        probabilities: np.ndarray | None,
        *,
        image_name: str = "",
        model: str = "",
        class_names: Iterable[str] = (),
        predicted_slices: Iterable[int] | None = None,
        fill_holes: bool = False,
    ) -> PredictionRecord:
        """Record ``labels`` as predicted, keeping a copy that later edits cannot touch."""
        labels = np.asarray(labels)
        check_labels_and_probabilities(labels, probabilities)
        depth = labels.shape[0] if labels.ndim == 3 else 1
        slices = set(range(depth)) if predicted_slices is None else set(predicted_slices)
        return cls(
            labels.copy(),
            probabilities,
            image_name,
            model,
            list(class_names),
            slices,
            set(),
            fill_holes,
        )

    @classmethod
    def from_slice(
        cls,
        depth: int,
        z: int,
        labels: np.ndarray,
        probabilities: np.ndarray | None,
        **kwargs: Any,
    ) -> PredictionRecord:
        """Record the prediction of one slice ``z`` of a ``depth``-slice stack (others empty).

        ``labels`` is (Y, X) and ``probabilities`` (K, Y, X); unpredicted slices hold label 0
        and zero probabilities. ``kwargs`` are those of :meth:`from_prediction`.
        """
        if not 0 <= z < depth:
            raise InputError(f"slice {z} is outside a stack of {depth} slices")
        stack = np.zeros((depth, *labels.shape), dtype=labels.dtype)
        stack[z] = labels
        probs = None
        if probabilities is not None:
            probs = np.zeros((probabilities.shape[0], depth, *labels.shape), np.float32)
            probs[:, z] = probabilities
        return cls.from_prediction(stack, probs, predicted_slices=[z], **kwargs)

    @property
    def is_stack(self) -> bool:
        """True for (Z, Y, X) labels."""
        return self.prediction.ndim == 3

    def update_slice(self, z: int, labels: np.ndarray, probabilities: np.ndarray | None) -> None:
        """Record a new prediction of slice ``z`` of a stack (labels (Y, X), probs (K, Y, X))."""
        if not self.is_stack:
            raise InputError("update_slice needs a (Z, Y, X) record; this one is 2D")
        self.prediction[z] = labels
        if self.probabilities is not None and probabilities is not None:
            self.probabilities[:, z] = probabilities
        self.predicted_slices.add(int(z))


def _check_same_shape(prediction: np.ndarray, labels: np.ndarray) -> None:
    if prediction.shape != labels.shape:
        raise InputError(
            f"the labels are shaped {labels.shape} but the prediction they are compared with is "
            f"{prediction.shape}; the layer's data was replaced, so its edits cannot be traced"
        )


def changed_mask(prediction: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Bool mask of the pixels whose label differs from the prediction."""
    labels = np.asarray(labels)
    _check_same_shape(prediction, labels)
    return np.asarray(labels != prediction)


def is_edited(prediction: np.ndarray, labels: np.ndarray) -> bool:
    """Tell whether any pixel differs from the prediction (or the shape changed)."""
    labels = np.asarray(labels)
    return prediction.shape != labels.shape or not np.array_equal(labels, prediction)


def changed_slices(prediction: np.ndarray, labels: np.ndarray) -> list[int]:
    """Z indices with at least one changed pixel (``[0]`` for an edited 2D image)."""
    mask = changed_mask(prediction, labels)
    if mask.ndim == 2:
        return [0] if mask.any() else []
    return [int(z) for z in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))]


@dataclass
class AnnotatedSlice:
    """One 2D slice a person corrected or checked.

    Attributes
    ----------
    index
        Z index (0 for a 2D image).
    labels
        (Y, X) labels as the person left them.
    corrected
        (Y, X) bool: the changed pixels, or every pixel when the slice was marked checked.
    checked
        Whether the person marked the whole slice as checked.
    """

    index: int
    labels: np.ndarray
    corrected: np.ndarray
    checked: bool


def annotated_slices(record: PredictionRecord, labels: np.ndarray) -> list[AnnotatedSlice]:
    """List the slices to learn from or export: every changed slice and every checked one.

    A changed slice's ``corrected`` mask is its changed pixels; a checked slice's is the whole
    slice, since the person vouched for all of it.
    """
    labels = np.asarray(labels)
    mask = changed_mask(record.prediction, labels)
    stack_labels = labels if labels.ndim == 3 else labels[None]
    stack_mask = mask if mask.ndim == 3 else mask[None]
    wanted = sorted(set(changed_slices(record.prediction, labels)) | set(record.checked))
    out = []
    for z in wanted:
        if not 0 <= z < stack_labels.shape[0]:
            continue
        checked = z in record.checked
        corrected = np.ones_like(stack_mask[z]) if checked else stack_mask[z].copy()
        out.append(AnnotatedSlice(z, np.array(stack_labels[z]), corrected, checked))
    return out


def soft_labels(labels: np.ndarray, num_classes: int, confidence: float = 0.8) -> np.ndarray:
    """Turn hard labels into class probabilities for the CRF.

    Each pixel gets ``confidence`` for its label and shares the rest equally among the other
    classes, so the CRF can move boundaries where the image disagrees.

    Returns
    -------
    numpy.ndarray
        (K, *labels.shape) float32 probabilities summing to 1 over K.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "ui":
        raise InputError(f"labels must be integers, got {labels.dtype}")
    if num_classes < 2:
        raise InputError(f"soft labels need at least 2 classes, got {num_classes}")
    if not 1.0 / num_classes <= confidence < 1.0:
        raise InputError(f"confidence {confidence} must be in [1/K, 1) (K={num_classes})")
    top = int(labels.max(initial=0))
    if top >= num_classes:
        raise InputError(
            f"the labels contain {top} but only {num_classes} classes (0..{num_classes - 1}) "
            "were given; pick a model with that many classes or fix the labels"
        )
    rest = (1.0 - confidence) / (num_classes - 1)
    out = np.full((num_classes, *labels.shape), rest, dtype=np.float32)
    np.put_along_axis(out, labels[None].astype(np.intp), np.float32(confidence), axis=0)
    return out
