"""Synthetic H&E-like bright-field tissue with exact gland labels (a second imaging mode).

Used to test fine-tuning on a domain unlike the fluorescence egg chambers: light background,
dark objects. Glands are irregular star-convex blobs with an epithelial band of crowded
hematoxylin-dark nuclei around a pale lumen (the lumen belongs to the gland, as in GlaS); the
stroma between them is eosin-pink and fibrous, with its own scattered nuclei and white tears.
Stains are mixed in optical density (Beer-Lambert), then lit unevenly, blurred and made noisy,
so a global threshold cannot separate glands from stroma exactly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ._noise import Seed, as_generator, dot_field, low_frequency_field, smooth_field

__all__ = ["make_brightfield_slice"]

_HEMATOXYLIN = np.array([0.650, 0.704, 0.286], np.float32)
_EOSIN = np.array([0.072, 0.990, 0.105], np.float32)


def _gland(
    rng: np.random.Generator,
    hw: tuple[int, int],
    taken: np.ndarray,
    h: np.ndarray,
    e: np.ndarray,
    nuclei: np.ndarray,
    fine: np.ndarray,
) -> None:
    """Draw one gland into the label mask ``taken`` and the stain maps, unless it overlaps."""
    radius = rng.uniform(18, 60)
    cy, cx = rng.uniform([0, 0], hw)
    ks = np.arange(2, 8)
    amps, phases = rng.uniform(0, 0.22, ks.size) / np.sqrt(ks - 1), rng.uniform(0, 6.3, ks.size)
    elong, angle = rng.uniform(1.0, 1.8), rng.uniform(0, np.pi)
    reach = radius * elong * (1 + amps.sum()) + 2
    box = (
        slice(max(0, int(cy - reach)), min(hw[0], int(cy + reach) + 1)),
        slice(max(0, int(cx - reach)), min(hw[1], int(cx + reach) + 1)),
    )
    if box[0].stop <= box[0].start or box[1].stop <= box[1].start:
        return
    yy, xx = np.ogrid[box]
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = (yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle)
    r, phi = np.hypot(u / elong, v), np.arctan2(v, u / elong)
    edge = radius * (
        1 + sum(a * np.cos(k * phi + p) for k, a, p in zip(ks, amps, phases, strict=True))
    )
    depth = edge - r  # pixels inside the outline (radially)
    obj = depth > 0
    if (taken[box] & ndi.binary_dilation(obj, iterations=3)).any():
        return
    taken[box] |= obj
    contrast = rng.uniform(0.45, 1.2)  # pale glands look almost like stroma
    band = radius * rng.uniform(0.35, 0.6)
    lumen = obj & (depth > band) if rng.random() < 0.8 else np.zeros_like(obj)
    epi = obj & ~lumen
    basal = np.clip(1 - depth / (0.6 * band), 0, 1)  # nuclei crowd at the outer edge
    hb, eb = h[box], e[box]
    hb[epi] = contrast * (0.35 + 1.4 * nuclei[box][epi] * (0.4 + basal[epi]))
    eb[epi] = contrast * 0.55 * (0.8 + 0.2 * fine[box][epi])
    hb[lumen] *= 0.1
    eb[lumen] = rng.uniform(0.0, 0.25) * (0.8 + 0.3 * fine[box][lumen])


def make_brightfield_slice(
    shape: tuple[int, int] = (256, 256), *, rng: Seed = None, density: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw an H&E-like bright-field image of glands in stroma, and its exact gland mask.

    Parameters
    ----------
    shape
        (height, width) in pixels.
    rng
        Seed or numpy Generator; the same seed gives the same output.
    density
        Relative number of glands per area (1.0: about one per 80 x 80 pixels tried).

    Returns
    -------
    image : numpy.ndarray
        uint8 (H, W, 3) RGB.
    labels : numpy.ndarray
        uint8 (H, W): 0 stroma or empty space, 1 gland (epithelium and lumen).
    """
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"shape {shape!r} must be two positive sizes (height, width)")
    rng = as_generator(rng)
    hw = (int(shape[0]), int(shape[1]))
    fibres_sigma = (1.2, 7.0) if rng.random() < 0.5 else (7.0, 1.2)
    fibres = smooth_field(rng, hw, fibres_sigma)
    fine = smooth_field(rng, hw, 1.2)
    nuclei = dot_field(rng, hw, 0.03, 1.3)
    e = rng.uniform(0.25, 0.55) * (0.75 + 0.3 * fibres)
    h = 0.08 + 1.2 * dot_field(rng, hw, 0.002, (1.0, 1.8)) + 0.05 * fine  # stromal nuclei
    tears = low_frequency_field(rng, hw, 6.0) > rng.uniform(0.6, 0.8)
    e[tears] *= 0.15
    h[tears] *= 0.2
    taken = np.zeros(hw, bool)
    for _ in range(int(density * hw[0] * hw[1] / 80**2) + 2):
        _gland(rng, hw, taken, h, e, nuclei, fine)
    od = h[..., None] * (_HEMATOXYLIN + rng.normal(0, 0.05, 3).astype(np.float32))
    od += e[..., None] * (_EOSIN + rng.normal(0, 0.05, 3).astype(np.float32))
    od *= rng.uniform(0.6, 1.1)
    light = 1 - rng.uniform(0.1, 0.35) * low_frequency_field(rng, hw, 1.5)
    rgb = 255 * light[..., None] * np.exp(-np.clip(od, 0, None)) * rng.uniform(0.9, 1.0, 3)
    rgb = ndi.gaussian_filter(rgb, (*(2 * [rng.uniform(0.5, 1.2)]), 0))
    rgb += rng.normal(0, rng.uniform(2, 7), rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), taken.astype(np.uint8)
