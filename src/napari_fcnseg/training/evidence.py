"""Is a fine-tuned checkpoint really better than the start? A paired bootstrap over blocks.

A fine-tune on one corrected slice is scored on a dozen held-out blocks of that slice. A gain of
a few thousandths there can be the luck of which blocks were held out, and on the shared real
slices such a round made the other slices clearly worse (``benchmarks/README.md``, "The
correction loop", "On a CPU without bfloat16"). So the selection asks for evidence: the
validation pixels are cut into square blocks, each block's intersection and union are counted
for both models, and the blocks are resampled with replacement (both models on the same
resampled blocks: a paired bootstrap).
Of the resamples in which the two models score differently, the share in which the
candidate's pooled IoU is the higher is the *confidence* of the gain; a checkpoint replaces
the start only above a threshold. Resamples in which they tie (e.g. only background blocks
that both leave empty) say nothing either way and are left out: on a small correction with a
handful of blocks they would otherwise hide a plain gain.
"""

from __future__ import annotations

import numpy as np

#: Bootstrap resamples: enough for a share of 0.9 to be known within about +-0.01.
RESAMPLES = 2000


def block_counts(
    prediction: np.ndarray,
    target: np.ndarray,
    valid: np.ndarray,
    block: int,
    *,
    classes: bool = False,
) -> np.ndarray:
    """Return (intersection, union) of the foreground per ``block``-px block, shaped (n, 2).

    ``prediction`` and ``target`` are foreground masks (or label images: > 0 is foreground),
    ``valid`` marks the annotated pixels; blocks without annotated pixels are left out. With
    ``classes``, they are label images and the counts are summed over the classes above 0
    (a pixel intersects only where both name the same class), so that the pooled ratio is a
    class IoU; with two classes this is the foreground count.
    """
    h, w = target.shape
    prediction, target = np.asarray(prediction), np.asarray(target)
    pred = (prediction > 0) & valid
    true = (target > 0) & valid
    rows, cols = -(-h // block), -(-w // block)
    padding = ((0, rows * block - h), (0, cols * block - w))

    def per_block(mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask, padding)
        return padded.reshape(rows, block, cols, block).sum(axis=(1, 3), dtype=np.int64).ravel()

    annotated = per_block(valid) > 0
    if classes:
        # sum over c of |P=c or T=c| is |P>0| + |T>0| - sum over c of |P=c and T=c|
        same = per_block(true & (prediction == target))
        counts = np.stack([same, per_block(pred) + per_block(true) - same], axis=1)
    else:
        counts = np.stack([per_block(pred & true), per_block(pred | true)], axis=1)
    return counts[annotated]


def gain_confidence(
    start: np.ndarray, candidate: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0
) -> float:
    """Share of the paired bootstrap resamples where ``candidate``'s pooled IoU beats ``start``'s.

    Both are :func:`block_counts` of the same blocks (same order). Only resamples in which the
    two differ count. Returns 0.0 when there is no block or no resample tells them apart.
    """
    start = np.asarray(start, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if start.shape != candidate.shape:
        raise ValueError(f"block counts shaped {start.shape} and {candidate.shape} differ")
    n = start.shape[0]
    if n == 0:
        return 0.0
    picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    sums_s = start[picks].sum(axis=1)
    sums_c = candidate[picks].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou_s = sums_s[:, 0] / sums_s[:, 1]
        iou_c = sums_c[:, 0] / sums_c[:, 1]
    iou_c, iou_s = np.nan_to_num(iou_c, nan=1.0), np.nan_to_num(iou_s, nan=1.0)
    better = np.count_nonzero(iou_c > iou_s)
    differ = better + np.count_nonzero(iou_c < iou_s)
    return float(better / differ) if differ else 0.0
