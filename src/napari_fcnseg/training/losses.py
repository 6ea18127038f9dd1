"""Segmentation losses that ignore unannotated pixels (:data:`~.samples.IGNORE_LABEL`).

Pixels labelled ``IGNORE_LABEL`` contribute nothing: not to the value and not to the gradient.
A batch without any annotated pixel gives a loss of 0 (with a zero gradient), not NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .config import LOSSES
from .samples import IGNORE_LABEL

__all__ = [
    "LOSSES",
    "class_balanced_weights",
    "cross_entropy",
    "segmentation_loss",
    "soft_dice_loss",
]


def cross_entropy(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean cross-entropy over annotated pixels (optionally class-weighted)."""
    if not bool((target != IGNORE_LABEL).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_LABEL)


def soft_dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """1 - mean over classes of the soft Dice between softmax(logits) and one-hot targets.

    Sums run over annotated pixels of the whole batch; ``smooth`` keeps absent classes at a
    Dice of about 1 when nothing is predicted for them.
    """
    k = logits.shape[1]
    valid = (target != IGNORE_LABEL).unsqueeze(1).to(logits.dtype)
    probs = torch.softmax(logits, dim=1) * valid
    onehot = F.one_hot(torch.where(target == IGNORE_LABEL, 0, target), k)
    onehot = onehot.permute(0, 3, 1, 2).to(logits.dtype) * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    return 1.0 - dice.mean()


def class_balanced_weights(target: Tensor, num_classes: int) -> Tensor:
    """Inverse-frequency class weights of the annotated pixels (1 for absent classes)."""
    valid = target[target != IGNORE_LABEL]
    counts = torch.bincount(valid.flatten(), minlength=num_classes)[:num_classes].float()
    present = counts > 0
    weights = torch.ones(num_classes, device=target.device)
    if present.any():
        weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def segmentation_loss(logits: Tensor, target: Tensor, kind: str = "dice_ce") -> Tensor:
    """Compute the training loss named ``kind``.

    ``"dice_ce"``: cross-entropy + soft Dice; ``"balanced_ce"``: cross-entropy with
    inverse-frequency class weights computed on the batch; ``"ce"``: plain cross-entropy.
    """
    if kind == "dice_ce":
        return cross_entropy(logits, target) + soft_dice_loss(logits, target)
    if kind == "balanced_ce":
        weights = class_balanced_weights(target, logits.shape[1]).to(logits.dtype)
        return cross_entropy(logits, target, weights)
    if kind == "ce":
        return cross_entropy(logits, target)
    raise InputError(f"unknown loss {kind!r}: choose one of {', '.join(LOSSES)}")
