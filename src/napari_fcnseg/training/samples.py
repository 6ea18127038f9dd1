"""Training samples: an image, its labels and, optionally, which pixels a person corrected.

A :class:`TrainingSample` holds raw pixels; the trainer normalises each one exactly like
inference does (:func:`prepare_sample`), so a model sees the same intensities in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..core.normalize import normalization_bounds, normalize_slice
from ..core.predict import prepare_image
from ..core.rescale import resize_channels, resize_labels, scaled_shape
from ..errors import InputError

#: Label value of pixels nobody annotated; every loss ignores it.
IGNORE_LABEL = 255


@dataclass
class TrainingSample:
    """One annotated 2D image.

    Attributes
    ----------
    image
        (Y, X, C) or (Y, X) pixels, any numeric dtype, not normalised.
    labels
        (Y, X) integers: 0 background, 1..K-1 classes, :data:`IGNORE_LABEL` not annotated.
    corrected
        (Y, X) bool mask of the pixels a person edited or confirmed, or ``None``.
    name
        Where the sample came from, for messages.
    """

    image: np.ndarray
    labels: np.ndarray
    corrected: np.ndarray | None = None
    name: str = ""


def sample_axes(image: np.ndarray) -> str:
    """Axes of a sample image: ``"YX"`` for a (Y, X) array, ``"YXC"`` for (Y, X, C)."""
    return "YX" if np.ndim(image) == 2 else "YXC"


def sample_channels(image: np.ndarray) -> int:
    """Channels of a (Y, X) (one) or (Y, X, C) sample image."""
    return 1 if np.ndim(image) == 2 else int(np.shape(image)[2])


def squeeze_channel(image: np.ndarray) -> np.ndarray:
    """Return a (Y, X, 1) image as (Y, X); any other image as it is."""
    image = np.asarray(image)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


@dataclass
class PreparedSample:
    """A sample ready for the network: normalised (C, Y, X) float32 and (Y, X) int64 targets."""

    image: np.ndarray
    target: np.ndarray
    name: str = ""

    @property
    def valid_pixels(self) -> int:
        """Pixels that take part in the loss."""
        return int(np.count_nonzero(self.target != IGNORE_LABEL))


def samples_from_stack(
    image_zyxc: np.ndarray, labels_zyx: np.ndarray, corrected: np.ndarray | None = None
) -> list[TrainingSample]:
    """One sample per Z slice that has any annotated or corrected pixel.

    Parameters
    ----------
    image_zyxc
        (Z, Y, X, C) stack (a (Z, Y, X) stack is taken as one channel).
    labels_zyx
        (Z, Y, X) labels with :data:`IGNORE_LABEL` where nothing is annotated.
    corrected
        Optional (Z, Y, X) mask of corrected pixels.
    """
    image_zyxc = np.asarray(image_zyxc)
    labels_zyx = np.asarray(labels_zyx)
    if image_zyxc.ndim == 3:
        image_zyxc = image_zyxc[..., None]
    if image_zyxc.ndim != 4 or labels_zyx.shape != image_zyxc.shape[:3]:
        raise InputError(
            f"labels shaped {labels_zyx.shape} do not match the stack shaped "
            f"{image_zyxc.shape}; give (Z, Y, X) labels for a (Z, Y, X, C) stack"
        )
    if corrected is not None and np.shape(corrected) != labels_zyx.shape:
        raise InputError(
            f"the corrected mask shaped {np.shape(corrected)} does not match the labels "
            f"shaped {labels_zyx.shape}"
        )
    samples = []
    for z in range(labels_zyx.shape[0]):
        annotated = np.any(labels_zyx[z] != IGNORE_LABEL)
        mask = None if corrected is None else np.asarray(corrected[z], dtype=bool)
        if annotated or (mask is not None and mask.any()):
            samples.append(
                TrainingSample(np.asarray(image_zyxc[z]), labels_zyx[z], mask, name=f"slice {z}")
            )
    return samples


def check_sample(sample: TrainingSample, num_classes: int, channels: int) -> None:
    """Raise :class:`InputError` when a sample cannot train a model with these classes/channels."""
    name = sample.name or "a training sample"
    image, labels = np.asarray(sample.image), np.asarray(sample.labels)
    if image.ndim not in (2, 3) or labels.ndim != 2 or image.shape[:2] != labels.shape:
        raise InputError(
            f"{name}: image shaped {image.shape} and labels shaped {labels.shape} do not match; "
            "give a (Y, X) or (Y, X, C) image with (Y, X) labels"
        )
    if labels.dtype.kind not in "ui":
        raise InputError(f"{name}: labels must be integers, got {labels.dtype}")
    bad = np.setdiff1d(np.unique(labels), [*range(num_classes), IGNORE_LABEL])
    if bad.size:
        raise InputError(
            f"{name}: labels contain {bad[:5].tolist()} but the model has {num_classes} classes "
            f"(0..{num_classes - 1}; {IGNORE_LABEL} = not annotated); fix the labels or train a "
            "model with more classes"
        )
    c = sample_channels(image)
    if c not in (1, channels):
        raise InputError(
            f"{name} has {c} channels but the model expects {channels}; train a new model on "
            "such images (not a fine-tune of this one) or give images with the model's channels"
        )
    if sample.corrected is not None and np.shape(sample.corrected) != labels.shape:
        raise InputError(
            f"{name}: the corrected mask shaped {np.shape(sample.corrected)} does not match "
            f"the labels shaped {labels.shape}"
        )


def prepare_sample(
    sample: TrainingSample,
    channels: int,
    normalization: dict,
    *,
    corrected_only: bool = False,
    corrected_margin: int = 16,
    scale: float = 1.0,
) -> PreparedSample:
    """Normalise a sample as inference does and compute its training target.

    The image goes through :func:`~napari_fcnseg.core.predict.prepare_image`,
    :func:`~napari_fcnseg.core.normalize.normalization_bounds` and
    :func:`~napari_fcnseg.core.normalize.normalize_slice`, the same calls as
    :func:`~napari_fcnseg.core.predict.predict_probabilities` makes on a 2D image. With
    ``corrected_only`` the target keeps only corrected pixels and a ``corrected_margin`` px band
    around them; a sample without a corrected mask counts as fully confirmed. A ``scale`` other
    than 1 then resizes image and target as inference resizes slices for a model of that
    working scale (:mod:`~napari_fcnseg.core.rescale`; the margin is in the image's pixels).
    """
    image = np.asarray(sample.image)
    stack = prepare_image(
        image, channels, sample_axes(image), sample.name or "training image"
    ).stack
    lo, hi = normalization_bounds(stack, normalization)
    chw = normalize_slice(stack[0], lo, hi)
    target = np.asarray(sample.labels).astype(np.int64)
    if corrected_only and sample.corrected is not None:
        target = np.where(
            corrected_region(sample.corrected, corrected_margin), target, IGNORE_LABEL
        )
    if scale != 1.0:
        shape = scaled_shape(target.shape, scale)
        chw, target = resize_channels(chw, shape), resize_labels(target, shape)
    return PreparedSample(chw, target, sample.name)


def corrected_region(corrected: np.ndarray, margin: int) -> np.ndarray:
    """Corrected pixels and every pixel within ``margin`` px (Euclidean) of one."""
    corrected = np.asarray(corrected, dtype=bool)
    if margin <= 0 or not corrected.any():
        return corrected
    return ndi.distance_transform_edt(~corrected) <= margin
