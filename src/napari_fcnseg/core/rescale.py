"""The model's working scale: images are resampled before the network and probabilities after.

A model file may say that its network sees images at ``scale`` times their size (``0.5``: half
the pixels along Y and X). Inference resamples each normalised slice to that size, runs the
tiles, and resamples the class probabilities back to the slice's own size, so that labels, the
CRF and everything downstream keep the image's pixels. Training resamples its images and
targets the same way. At 0.5 the network sees 4x the context per pixel of compute, which paid
off for a fine-tune on large objects on a CPU (``benchmarks/README.md``, "Fine-tuning on a new
imaging mode"). The scale a model declares is checked by :mod:`napari_fcnseg.model.scale`.

Resampling uses :func:`torch.nn.functional.interpolate` (bilinear, antialiased when shrinking);
labels take the nearest pixel so no class (or the "not annotated" value) is invented.
"""

from __future__ import annotations

import numpy as np
import torch


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """(Y, X) of a slice of ``shape`` resized by ``scale`` (at least one pixel each)."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def resize_channels(chw: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a float (C, Y, X) array to ``shape`` bilinearly (antialiased when shrinking).

    Every output value is a weighted mean of input values with weights summing to 1, so class
    probabilities stay probabilities.
    """
    if tuple(chw.shape[1:]) == tuple(shape):
        return np.asarray(chw, dtype=np.float32)
    source = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))[None]
    shrinking = shape[0] < chw.shape[1] or shape[1] < chw.shape[2]
    with torch.inference_mode():
        out = torch.nn.functional.interpolate(
            source, size=shape, mode="bilinear", align_corners=False, antialias=shrinking
        )
    return out[0].numpy()


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a (Y, X) label (or mask) array to ``shape`` by taking the nearest pixel."""
    height, width = labels.shape
    if (height, width) == tuple(shape):
        return labels
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * height / shape[0]).astype(np.intp), height - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * width / shape[1]).astype(np.intp), width - 1)
    return labels[np.ix_(rows, cols)]
