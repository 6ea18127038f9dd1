"""How sure the model is, per pixel: the normalised entropy of its class probabilities.

``0`` where one class has all the probability, ``1`` where every class is equally likely
(entropy divided by ``log K``, so the scale is the same for any number of classes). It costs
nothing beyond the prediction, which the labels need anyway, and marks where the model is
torn between classes: along the outlines it is unsure of and over structures it has not seen.
How well it points at the model's errors on real slices is measured in
``benchmarks/bench_uncertainty.py`` (``benchmarks/README.md``, "Uncertainty").
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

#: Probabilities are clipped to this before the logarithm (0 log 0 is taken as 0).
EPSILON = 1e-7


def entropy_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """Per-pixel normalised entropy of ``probabilities`` shaped (K, ...), in [0, 1].

    Returns float32 of the spatial shape, (Y, X) or (Z, Y, X). A stack is processed one slice
    at a time, so the temporary arrays stay the size of one slice.
    """
    probs = np.asarray(probabilities)
    if probs.ndim < 3 or probs.shape[0] < 2:
        raise InputError(
            f"uncertainty needs class probabilities shaped (K, Y, X) or (K, Z, Y, X) with K >= 2, "
            f"got shape {probs.shape}"
        )
    if probs.ndim == 3:
        return _entropy_2d(probs)
    out = np.empty(probs.shape[1:], dtype=np.float32)
    for z in range(probs.shape[1]):
        out[z] = _entropy_2d(probs[:, z])
    return out


def _entropy_2d(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs.astype(np.float32, copy=False), EPSILON, 1.0)
    entropy = -(p * np.log(p)).sum(axis=0)
    return (entropy / np.float32(np.log(probs.shape[0]))).clip(0.0, 1.0).astype(np.float32)
