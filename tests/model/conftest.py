"""Fixtures of the model tests: an exact O(N^2) dense CRF to compare the layer with."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch


def _normalised(kernel: torch.Tensor) -> torch.Tensor:
    norm = kernel.sum(1).rsqrt()
    return norm[:, None] * kernel * norm[None, :]


def dense_crf_kernels(
    image: torch.Tensor,
    *,
    spatial_sigma: float,
    bilateral_spatial_sigma: float,
    bilateral_intensity_sigma: float,
    spacing: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact symmetric-normalised spatial and bilateral kernels ``(N, N)`` of a small image."""
    shape = image.shape[1:]
    spacing = (1.0,) * len(shape) if spacing is None else spacing
    axes = [torch.arange(n, dtype=torch.float64) * s for n, s in zip(shape, spacing, strict=True)]
    pos = torch.stack(torch.meshgrid(*axes, indexing="ij")).reshape(len(shape), -1).T
    colour = image.reshape(image.shape[0], -1).T.double()
    spatial = torch.exp(-0.5 * torch.cdist(pos / spatial_sigma, pos / spatial_sigma) ** 2)
    features = torch.cat([pos / bilateral_spatial_sigma, colour / bilateral_intensity_sigma], 1)
    bilateral = torch.exp(-0.5 * torch.cdist(features, features) ** 2)
    return _normalised(spatial), _normalised(bilateral)


def dense_crf_reference(
    logits: torch.Tensor,
    image: torch.Tensor,
    *,
    iterations: int = 5,
    spatial_sigma: float = 3.0,
    spatial_weight: float = 3.0,
    bilateral_spatial_sigma: float = 80.0,
    bilateral_intensity_sigma: float = 13.0,
    bilateral_weight: float = 10.0,
    spacing: Sequence[float] | None = None,
) -> list[torch.Tensor]:
    """Brute-force Potts dense CRF: Q after 0..T steps, each ``(K, *spatial)`` float64."""
    ks, kb = dense_crf_kernels(
        image,
        spatial_sigma=spatial_sigma,
        bilateral_spatial_sigma=bilateral_spatial_sigma,
        bilateral_intensity_sigma=bilateral_intensity_sigma,
        spacing=spacing,
    )
    unary = logits.reshape(logits.shape[0], -1).double()
    q = unary.softmax(0)
    steps = [q]
    for _ in range(iterations):
        message = spatial_weight * (q @ ks) + bilateral_weight * (q @ kb)
        q = (unary + message).softmax(0)
        steps.append(q)
    return [s.reshape(logits.shape) for s in steps]


def mean_field_free_energy(
    q: torch.Tensor, logits: torch.Tensor, weighted_kernel: torch.Tensor
) -> float:
    """Variational free energy ``sum(U Q) + sum(Q log Q) - 1/2 sum_ij Q_i W_ij Q_j`` (Potts)."""
    qf = q.reshape(q.shape[0], -1).double()
    unary = -logits.reshape(logits.shape[0], -1).double()
    entropy = (qf * qf.clamp_min(1e-30).log()).sum()
    pairwise = 0.5 * (qf * (qf @ weighted_kernel)).sum()
    return float((unary * qf).sum() + entropy - pairwise)


@pytest.fixture
def brute_force_crf() -> Callable[..., list[torch.Tensor]]:
    return dense_crf_reference


@pytest.fixture
def brute_force_kernels() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    return dense_crf_kernels


@pytest.fixture
def free_energy() -> Callable[..., float]:
    return mean_field_free_energy
