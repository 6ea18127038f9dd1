"""Averaged weights for fine-tuning: an exponential moving average, and a pull toward the start.

A fine-tune on one or two slices moves the weights along a noisy path: checkpoints a few steps
apart score very differently on other slices. Two remedies from the fine-tuning literature,
both free of extra training steps:

* an exponential moving average of the weights (``ema_decay``; Polyak averaging), started
  from the starting weights, so early averages stay close to the start;
* interpolation between the starting and the fine-tuned weights (``interpolation`` in [0, 1],
  WiSE-FT, Wortsman et al. 2022): ``start + interpolation * (trained - start)``, which kept
  robustness to new data that plain fine-tuning lost.

Validation, checkpoint selection and the returned model all use the averaged weights; the
optimiser keeps training the raw ones. Which helps is measured in ``benchmarks/bench_loop.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """The weights to validate: the EMA of the parameters, interpolated toward the start."""

    def __init__(self, net: nn.Module, ema_decay: float | None, interpolation: float):
        self.decay = ema_decay
        self.interpolation = interpolation
        self.start = {n: p.detach().clone() for n, p in net.named_parameters()}
        self.ema = dict(self.start) if ema_decay else None
        if self.ema is not None:
            self.ema = {n: p.clone() for n, p in self.ema.items()}

    @property
    def active(self) -> bool:
        """Whether the validated weights differ from the raw ones."""
        return self.ema is not None or self.interpolation != 1.0

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Fold the current parameters into the moving average (after an optimiser step)."""
        if self.ema is None or self.decay is None:
            return
        for name, parameter in net.named_parameters():
            self.ema[name].mul_(self.decay).add_(parameter.detach(), alpha=1.0 - self.decay)

    @contextmanager
    def swapped_in(self, net: nn.Module) -> Iterator[None]:
        """Load the averaged weights into ``net`` for the block, then restore the raw ones."""
        if not self.active:
            yield
            return
        raw = {n: p.detach().clone() for n, p in net.named_parameters()}
        with torch.no_grad():
            for name, parameter in net.named_parameters():
                trained = self.ema[name] if self.ema is not None else parameter
                start = self.start[name]
                parameter.copy_(start + self.interpolation * (trained - start))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in net.named_parameters():
                    parameter.copy_(raw[name])
