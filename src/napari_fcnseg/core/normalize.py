"""Intensity normalisation before the network."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

#: Pixels sampled per channel to estimate percentiles of a large image or stack.
PERCENTILE_SAMPLES = 2**22


def _sample(stack: np.ndarray, max_samples: int) -> np.ndarray:
    """Sample a (Z, Y, X, C) stack on a regular grid, as an (N, C) float32 array.

    At most ``max_samples`` pixels per channel: estimates cost bounded memory whatever the
    stack size.
    """
    z, y, x, c = stack.shape
    step_z = max(1, int(np.ceil(z / 16)))
    per_slice = max(1, max_samples // len(range(0, z, step_z)))
    step_xy = max(1, int(np.ceil(np.sqrt(y * x / per_slice))))
    sample = np.asarray(stack[::step_z, ::step_xy, ::step_xy, :], dtype=np.float32)
    return sample.reshape(-1, c)


def channel_percentiles(
    stack: np.ndarray, low: float, high: float, *, max_samples: int = PERCENTILE_SAMPLES
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``low`` and ``high`` percentiles of a (Z, Y, X, C) stack.

    Large stacks are subsampled on a regular grid (at most ``max_samples`` pixels per channel),
    so the estimate costs bounded memory and time whatever the stack size.
    """
    sample = _sample(stack, max_samples)
    lo = np.percentile(sample, low, axis=0).astype(np.float32)
    hi = np.percentile(sample, high, axis=0).astype(np.float32)
    return lo, hi


def normalize_slice(image: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Scale a (Y, X, C) slice so that ``lo`` maps to 0 and ``hi`` to 1, per channel.

    Returns a float32 array shaped (C, Y, X), ready for the network.
    """
    scale = np.where(hi - lo > 1e-12, hi - lo, 1.0).astype(np.float32)
    out = (np.asarray(image, dtype=np.float32) - lo) / scale
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def normalization_bounds(
    stack: np.ndarray, normalization: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds for :func:`normalize_slice` according to a model's normalisation record.

    Methods: ``percentile`` (our models: ``low`` and ``high`` percentiles per channel),
    ``mean_std`` (zero mean, unit variance) and ``fixed`` (per-channel ``low`` and ``high``
    values); the last two come from bioimage.io packages (:mod:`..model.foreign`), as do
    ``joint`` (one estimate over all channels) and ``eps`` (added to the range).
    """
    method = normalization.get("method", "percentile")
    channels = stack.shape[-1]
    if method == "fixed":
        lo = np.asarray(normalization["low"], dtype=np.float32)
        hi = np.asarray(normalization["high"], dtype=np.float32)
        return np.broadcast_to(lo, (channels,)).copy(), np.broadcast_to(hi, (channels,)).copy()
    if method not in ("percentile", "mean_std"):
        raise InputError(
            f"the model asks for normalisation {method!r}, which this version does not know; "
            "upgrade napari-fcnseg"
        )
    joint = bool(normalization.get("joint", False))
    source = (
        stack.reshape(stack.shape[0], stack.shape[1], -1, 1) if joint and channels > 1 else stack
    )
    if method == "percentile":
        lo, hi = channel_percentiles(
            source, float(normalization.get("low", 1.0)), float(normalization.get("high", 99.8))
        )
    else:
        sample = _sample(source, PERCENTILE_SAMPLES)
        lo = sample.mean(axis=0).astype(np.float32)
        hi = lo + sample.std(axis=0).astype(np.float32)
    hi = hi + np.float32(normalization.get("eps", 0.0))
    if joint:
        lo, hi = np.broadcast_to(lo, (channels,)).copy(), np.broadcast_to(hi, (channels,)).copy()
    return lo, hi
