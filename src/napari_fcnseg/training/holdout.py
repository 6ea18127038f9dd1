"""A spatial hold-out: blocks of each corrected slice that a fine-tune scores on, never trains on.

With one or two corrected slices there are no spare slices to validate on, and validating on
the training pixels says nothing about the next scan. So each slice is cut into square blocks
and a fixed share of the blocks that hold annotated pixels is set aside: their labels are hidden
from training (set to :data:`~.samples.IGNORE_LABEL`) and only they are scored. The blocks are
chosen from the sample's name, so the same slice keeps the same hold-out in every later round
(its held-out pixels never become training pixels) whatever else is in the set.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..errors import InputError
from .config import HOLDOUT_BLOCK, HOLDOUT_FRACTION
from .samples import IGNORE_LABEL, TrainingSample


def block_side(shape: tuple[int, ...], block: int = HOLDOUT_BLOCK) -> int:
    """Return the side of the hold-out blocks on an image of ``shape`` (Y, X).

    ``block``, smaller on small images: at most a quarter of the shorter side, at least 8 px.
    """
    return min(block, max(8, min(shape[:2]) // 4))


def holdout_mask(
    labels: np.ndarray,
    *,
    key: str,
    block: int = HOLDOUT_BLOCK,
    fraction: float = HOLDOUT_FRACTION,
) -> np.ndarray:
    """Return the (Y, X) bool mask of the held-out blocks of one slice.

    Blocks are ``block`` x ``block`` pixels (smaller on small images: at most a quarter of
    the shorter side, at least 8 px); of the blocks with at least one annotated pixel,
    ``round(fraction * n)`` (at least one, and never all when there are two or more) are
    chosen by a generator seeded from ``key``, half of them (at least one) among the blocks
    with foreground (label > 0). A slice with one annotated block holds that
    block out only when ``fraction`` is 1.
    """
    if block < 1 or not 0.0 < fraction <= 1.0:
        raise InputError(f"hold-out block {block} must be >= 1 and fraction {fraction} in (0, 1]")
    labels = np.asarray(labels)
    h, w = labels.shape
    block = block_side(labels.shape, block)
    rows, cols = -(-h // block), -(-w // block)
    annotated = np.zeros((rows, cols), dtype=bool)
    foreground = np.zeros((rows, cols), dtype=bool)
    valid = labels != IGNORE_LABEL
    for i in range(rows):
        for j in range(cols):
            window = np.s_[i * block : (i + 1) * block, j * block : (j + 1) * block]
            annotated[i, j] = valid[window].any()
            foreground[i, j] = (valid[window] & (labels[window] > 0)).any()
    candidates = np.flatnonzero(annotated)
    count = round(fraction * candidates.size)
    if fraction < 1.0:
        count = min(max(count, 1), candidates.size - 1)
    chosen = np.zeros(rows * cols, dtype=bool)
    if count > 0:
        # Half of the blocks (at least one) among those that show foreground, where the
        # mistakes are: a hold-out of background alone scores any model that predicts nothing
        # as perfect.
        rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
        with_fg = rng.permutation(np.flatnonzero(annotated & foreground))
        first = with_fg[: max(1, count // 2)]
        rest = rng.permutation(np.setdiff1d(candidates, first))[: count - first.size]
        chosen[np.concatenate([first, rest]).astype(np.intp)] = True
    grid = chosen.reshape(rows, cols)
    return np.kron(grid, np.ones((block, block), dtype=bool))[:h, :w].astype(bool)


def split_holdout(
    samples: Sequence[TrainingSample],
    *,
    block: int = HOLDOUT_BLOCK,
    fraction: float = HOLDOUT_FRACTION,
) -> tuple[list[TrainingSample], list[TrainingSample]]:
    """Split each sample into a training part and a held-out part (same image, other labels).

    Returns ``(train, held_out)``: in ``train`` the held-out blocks are not annotated, in
    ``held_out`` only they are. A sample whose hold-out is empty (a single annotated block)
    goes to ``train`` whole and has no held-out part.
    """
    train, held_out = [], []
    for sample in samples:
        labels = np.asarray(sample.labels)
        mask = holdout_mask(labels, key=sample.name, block=block, fraction=fraction)
        if not (mask & (labels != IGNORE_LABEL)).any():
            train.append(sample)
            continue
        ignore = np.asarray(IGNORE_LABEL, dtype=labels.dtype)
        train.append(replace(sample, labels=np.where(mask, ignore, labels)))
        held_out.append(
            replace(sample, labels=np.where(mask, labels, ignore), name=f"{sample.name} (held out)")
        )
    return train, held_out


def held_out_pixels(samples: Sequence[TrainingSample]) -> int:
    """Annotated pixels in ``samples`` (the held-out parts from :func:`split_holdout`)."""
    return int(sum(np.count_nonzero(np.asarray(s.labels) != IGNORE_LABEL) for s in samples))
