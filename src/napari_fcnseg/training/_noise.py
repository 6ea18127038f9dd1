"""Random fields shared by the synthetic image generators (numpy + scipy only)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

Seed = int | np.random.Generator | None


def as_generator(rng: Seed) -> np.random.Generator:
    """Return a numpy Generator for a seed, a Generator (returned as is) or None (fresh)."""
    return np.random.default_rng(rng)


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: float | tuple[float, ...]
) -> np.ndarray:
    """Gaussian-smoothed white noise, rescaled to zero mean and unit standard deviation.

    Parameters
    ----------
    rng
        Random generator.
    shape
        Shape of the field.
    sigma
        Correlation length in pixels, one value or one per axis.

    Returns
    -------
    numpy.ndarray
        float32 field of ``shape``.
    """
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-6)


def low_frequency_field(
    rng: np.random.Generator, shape: tuple[int, ...], cells: float = 3.0, terms: int = 3
) -> np.ndarray:
    """Smooth field varying over about ``cells`` periods along the longest axis, in [0, 1].

    A sum of ``terms`` separable products of smooth random 1-D curves (cubic interpolation of a
    coarse random grid), so it costs a few multiplications per pixel even on large images.
    """
    longest = max(shape)
    field = np.zeros(shape, np.float32)
    for _ in range(terms):
        term = np.ones((1,) * len(shape), np.float32)
        for axis, n in enumerate(shape):
            coarse = max(2, int(np.ceil(cells * n / longest)) + 2)
            curve = ndi.zoom(rng.random(coarse).astype(np.float32), n / coarse, order=3)[:n]
            term = term * curve.reshape([-1 if a == axis else 1 for a in range(len(shape))])
        field += term
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / (hi - lo + 1e-6)


def dot_field(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    density: float,
    sigma: float | tuple[float, ...],
) -> np.ndarray:
    """Blurred random dots (a cobblestone-like texture) scaled to [0, 1].

    Parameters
    ----------
    rng
        Random generator.
    shape
        Shape of the field.
    density
        Fraction of pixels that seed a dot.
    sigma
        Dot radius (Gaussian sigma) in pixels, one value or one per axis.

    Returns
    -------
    numpy.ndarray
        float32 field of ``shape``.
    """
    seeds = (rng.random(shape, dtype=np.float32) < density).astype(np.float32)
    field = ndi.gaussian_filter(seeds, sigma)
    return np.clip(field / (field.mean() + 3 * field.std() + 1e-6), 0.0, 1.0)
