"""Synthetic confocal-like slices of Drosophila egg chambers, with exact labels.

A scene is a few chains of ovoid egg chambers in 3-D: each chamber is an ellipsoid whose outer
shell is the follicle-cell layer and whose inside holds about fifteen spherical nurse-cell nuclei
in cytoplasm; the smallest chambers at the tip of a chain (germarium) are follicle cells only.
A slice is the cut of this scene by a plane, so a stack grows and shrinks consistently across z.
Labels are the geometry of the cut; the image is then textured, blurred by a PSF, unevenly lit,
coloured between red and magenta and made noisy (Poisson + Gaussian).

The class numbers follow the real annotations in ``drosophila_ovary/annot_struct``: there the
bright round blobs (nurse-cell nuclei) are 2 and the darker region around them (nurse-cell
cytoplasm) is 3; see :data:`CLASS_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ._egg_chamber_geometry import Chamber, cut_plane, cut_stalk, make_scene
from ._noise import Seed, as_generator, dot_field, low_frequency_field, smooth_field
from .synthetic_brightfield import make_brightfield_slice

__all__ = [
    "CLASS_NAMES",
    "CONFOCAL",
    "SHARP",
    "Optics",
    "make_brightfield_slice",
    "make_egg_chamber_slice",
    "make_egg_chamber_stack",
]

BACKGROUND, FOLLICLE, NUCLEUS, CYTOPLASM = 0, 1, 2, 3
CLASS_NAMES = ("background", "follicle cells", "nurse-cell nuclei", "nurse-cell cytoplasm")


@dataclass(frozen=True)
class Optics:
    """How the microscope renders a scene, in pixels at ``scale`` 1.

    ``psf_sigma``: the range of the Gaussian PSF's sigma. ``glow``: out-of-focus light, a share
    (drawn from this range) of the blurred stain, blurred again with a sigma from
    ``glow_sigma`` and added to it; none by default (and no random draw either, so the default
    slices stay as they were).
    """

    psf_sigma: tuple[float, float] = (0.6, 1.6)
    glow: tuple[float, float] = (0.0, 0.0)
    glow_sigma: tuple[float, float] = (6.0, 15.0)

    @property
    def tag(self) -> str:
        """``""`` for the default optics, else a short name of these (in sample names)."""
        if self == Optics():
            return ""
        psf, glow = self.psf_sigma, self.glow
        return f"psf{psf[0]:g}-{psf[1]:g}-glow{glow[0]:g}-{glow[1]:g}"


#: The generator's first optics: sharp edges (the chambers' stain ends within 1-2 px).
SHARP = Optics()
#: Edges that fall off over several pixels, with a faint glow beyond them, as the real confocal
#: slices' do (``benchmarks/bench_edges.py``; ``benchmarks/README.md``, "The synthetic look").
CONFOCAL = Optics(psf_sigma=(1.5, 4.5), glow=(0.1, 0.5))


def _draw_nuclei(
    ch: Chamber,
    z: float,
    box: tuple[slice, slice],
    inner: np.ndarray,
    lab: np.ndarray,
    st: np.ndarray,
    fine: np.ndarray,
    gain: float,
) -> None:
    """Label and paint the cuts of a chamber's nurse-cell nuclei by the plane ``z``, in place.

    ``inner``, ``lab``, ``st`` and ``fine`` are the chamber's box of the interior mask, labels,
    stain and texture; nuclei are clipped to the interior.
    """
    for nz, ny, nx, nr, nb in ch.nuclei:
        if abs(z - nz) >= nr:
            continue
        rz = np.sqrt(nr**2 - (z - nz) ** 2)
        soft = 1.0 + 2.5 * (1 - rz / nr)  # cuts near a pole look dim and fuzzy
        reach = rz + 3 * soft
        sy = slice(max(box[0].start, int(ny - reach)), min(box[0].stop, int(ny + reach) + 1))
        sx = slice(max(box[1].start, int(nx - reach)), min(box[1].stop, int(nx + reach) + 1))
        if sy.stop <= sy.start or sx.stop <= sx.start:
            continue
        yy, xx = np.ogrid[sy, sx]
        dist = np.hypot(yy - ny, xx - nx)
        sub = (
            slice(sy.start - box[0].start, sy.stop - box[0].start),
            slice(sx.start - box[1].start, sx.stop - box[1].start),
        )
        inside = inner[sub] & (dist < rz)
        lab[sub][inside] = NUCLEUS
        level = nb * gain * ch.brightness * (0.4 + 0.6 * rz / nr)
        glow = level / (1 + np.exp((dist - rz) / soft))
        texture = 0.8 + 0.2 * fine[sub]
        st[sub] = np.where(inner[sub], np.maximum(st[sub], glow * texture), st[sub])


def _render_plane(
    chambers: list[Chamber],
    z: float,
    hw: tuple[int, int],
    look: dict[str, float],
    dots: np.ndarray,
    fine: np.ndarray,
    cells: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Labels, stain intensity and cytoplasm mask of the plane ``z`` (before optics and noise).

    ``cells``: a texture of densely packed cell nuclei for the germaria (chains with tips), as
    bright as the nurse-cell nuclei; without it a germarium is textured like a follicle layer.
    """
    best = np.full(hw, -1e9, np.float32)
    second, owner = best.copy(), np.full(hw, -1, np.int32)
    cuts = [(i, cut) for i, ch in enumerate(chambers) if (cut := cut_plane(ch, z, hw)) is not None]
    for i, (box, depth, _, _) in cuts:
        b, s = best[box], second[box]
        upd = depth > b
        second[box] = np.where(upd, b, np.maximum(s, depth))
        best[box] = np.where(upd, depth, b)
        owner[box] = np.where(upd, i, owner[box])
    labels = np.zeros(hw, np.uint8)
    stain = np.zeros(hw, np.float32)
    for ch in chambers:  # stalks first: the chambers are drawn over them
        if (stalk := cut_stalk(ch, z, hw)) is not None:
            box, mask = stalk
            level = ch.brightness * look["rim"] * look["stalk"]
            stain[box] = np.where(mask, level * (0.5 + 0.5 * fine[box]), stain[box])
    for i, (box, depth, inner, phi) in cuts:
        ch, sec = chambers[i], second[box]
        mine = owner[box] == i
        half = np.where(sec > 0, (depth - sec) / 2, np.inf)
        body = mine & (np.minimum(depth, half) > look["gap"])
        inner = body & inner & (half > ch.rim)
        lab, st = labels[box], stain[box]
        lab[body], lab[inner] = FOLLICLE, CYTOPLASM
        rim = body & ~inner
        # a row of follicle nuclei (beads) across the rim, cobbles where the cut is tangential
        n_beads = np.round(2 * np.pi * ch.axes[:2].mean() / (look["bead"] * ch.rim))
        beads = (0.5 + 0.5 * np.cos(n_beads * phi + 0.6 * fine[box])) ** 2
        beads *= np.sin(np.pi * np.clip(depth / ch.rim, 0, 1))
        tex = np.where(depth < ch.rim, beads, dots[box])
        st[rim] = ch.brightness * look["rim"] * (0.4 + 0.8 * tex[rim])
        if ch.germarium and cells is not None:
            st[body] = ch.brightness * look["nuc"] * (0.3 + 0.7 * cells[box][body])
        st[inner] = ch.brightness * look["cyto"] * (0.85 + 0.2 * fine[box][inner])
        _draw_nuclei(ch, z, box, inner, lab, st, fine[box], look["nuc"])
    return labels, stain, (labels == CYTOPLASM).astype(np.float32)


def _render(
    shape: tuple[int, int, int],
    z_spacing: float,
    rng: np.random.Generator,
    channels: int,
    scale: float,
    n_chains: int | None,
    optics: Optics,
    tips: bool = False,
    stalks: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a (Z, H, W) scene; shared by the slice and stack generators."""
    nz, h, w = shape
    chambers = make_scene(rng, (h, w), scale, n_chains, tips, stalks)
    sz = 0.0 if nz == 1 else 1.0 / z_spacing  # textures are 3-D: consistent across planes
    dots = dot_field(rng, shape, 0.02 / scale, (1.6 * scale * sz, 1.6 * scale, 1.6 * scale))
    fine = smooth_field(rng, shape, (1.5 * sz, 1.5, 1.5))
    look = {
        "gap": 0.0 if rng.random() < 0.5 else rng.uniform(0.6, 2.0),
        "rim": rng.uniform(0.55, 1.0),
        "cyto": rng.uniform(0.1, 0.3),
        "nuc": rng.uniform(1.0, 1.4),
        "bead": rng.uniform(0.9, 1.4),
    }
    cells = None
    if tips:  # germarium cells: about one nucleus of 3 px radius per 80 px^2
        sigma = 2.2 * scale
        cells = dot_field(rng, shape, 0.0125 / scale**2, (sigma * sz, sigma, sigma))
    # stalk tissue: dimmer than the follicle layer (drawn last: the default stream is kept)
    look["stalk"] = rng.uniform(0.12, 0.35) if stalks else 0.0
    zs = (np.arange(nz) - (nz - 1) / 2) * z_spacing
    planes = [
        _render_plane(
            chambers, z, (h, w), look, dots[k], fine[k], None if cells is None else cells[k]
        )
        for k, z in enumerate(zs)
    ]
    labels = np.stack([p[0] for p in planes])
    stain, cyto = np.stack([p[1] for p in planes]), np.stack([p[2] for p in planes])
    image = _optics(rng, stain, cyto * (0.7 + 0.3 * fine), labels, channels, scale, optics)
    return image, labels


def _optics(
    rng: np.random.Generator,
    stain: np.ndarray,
    cyto: np.ndarray,
    labels: np.ndarray,
    channels: int,
    scale: float,
    optics: Optics,
) -> np.ndarray:
    """Light, blur, colour and noise: (Z, H, W) stain to uint8 (Z, H, W[, 3]) image."""
    _, h, w = stain.shape
    # uneven illumination, faint haze and sometimes a dim out-of-focus tube in the background
    stain *= 1 - rng.uniform(0.2, 0.5) * low_frequency_field(rng, (1, h, w), 2.0)
    stain += rng.uniform(0.0, 0.015) * low_frequency_field(rng, (1, h, w), 3.0)
    if rng.random() < 0.35:
        yy, xx = np.ogrid[0:h, 0:w]
        p, t = rng.uniform([0, 0], [h, w]), rng.uniform(0, np.pi)
        along = (yy - p[0]) * np.sin(t) + (xx - p[1]) * np.cos(t)
        across = (yy - p[0]) * np.cos(t) - (xx - p[1]) * np.sin(t)
        across = across - along**2 / rng.uniform(3e2, 3e3)
        tube = np.exp(-((across / rng.uniform(8, 25)) ** 2)).astype(np.float32)
        stain += rng.uniform(0.04, 0.12) * tube
    psf = (0, *2 * [rng.uniform(*optics.psf_sigma) * scale])
    stain = ndi.gaussian_filter(stain, psf)
    if optics.glow[1] > 0:
        amount, reach = rng.uniform(*optics.glow), rng.uniform(*optics.glow_sigma) * scale
        stain += amount * ndi.gaussian_filter(stain, (0, reach, reach))
    if channels == 1:
        colour = stain[..., None]
    else:
        specks = (rng.random(stain.shape, dtype=np.float32) < 0.002) & (labels > 0)
        extra = rng.uniform(0, 0.25) * (rng.random() < 0.35) * cyto + 0.8 * specks
        green = rng.uniform(0.03, 0.25) * stain + ndi.gaussian_filter(extra, psf)
        colour = np.stack([stain, green, rng.uniform(0.0, 0.8) * stain], -1)
    # shot noise (Gaussian approximation of Poisson) plus read noise
    photons, read = rng.uniform(60, 400), rng.uniform(0.002, 0.012)
    colour = np.clip(colour, 0, None, dtype=np.float32)
    sigma = np.sqrt(colour / photons + read**2)
    colour += sigma * rng.standard_normal(colour.shape, dtype=np.float32)
    gain, gamma = rng.uniform(200, 320) / 255, rng.uniform(0.8, 1.2)
    image = (255 * np.clip(colour * gain, 0, 1) ** gamma).astype(np.uint8)
    return image[..., 0] if channels == 1 else image


def _check(shape: tuple[int, ...], ndim: int, channels: int) -> None:
    if len(shape) != ndim or min(shape) < 1:
        raise InputError(f"shape {shape!r} must be {ndim} positive sizes")
    if channels not in (1, 3):
        raise InputError(f"channels={channels!r}: use 3 for RGB or 1 for greyscale")


def make_egg_chamber_slice(
    shape: tuple[int, int] = (256, 256),
    *,
    rng: Seed = None,
    channels: int = 3,
    scale: float = 1.0,
    n_chains: int | None = None,
    optics: Optics = SHARP,
    tips: bool = False,
    stalks: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one confocal-like slice of egg-chamber chains and its exact labels.

    Parameters
    ----------
    shape
        (height, width) in pixels.
    rng
        Seed or numpy Generator; the same seed gives the same output.
    channels
        3 for an RGB image, 1 for greyscale.
    scale
        Size of the chambers relative to the real 650 x 1030 slices (1.0: same pixel size).
    n_chains
        Number of chains of chambers; random (1 to 3) when None.
    optics
        PSF and glow (:class:`Optics`; default :data:`SHARP`).
    tips
        End each chain in an elongated germarium of densely packed cells (follicle cells only,
        as the real ``annot_struct`` files label it) instead of ever smaller round buds; off by
        default, so that the default slices stay as they were.
    stalks
        Join most neighbouring chambers by a stalk of dim tissue, labelled background (the
        real slices show dim tissue in the necks between chambers, outside the annotated
        outlines), and let neighbours lie up to 0.12 of their width apart; off by default.

    Returns
    -------
    image : numpy.ndarray
        uint8, (H, W, 3) or (H, W) when ``channels == 1``.
    labels : numpy.ndarray
        uint8 (H, W): 0 background, 1 follicle cells, 2 nurse-cell nuclei, 3 cytoplasm.
    """
    _check(tuple(shape), 2, channels)
    image, labels = _render(
        (1, *shape), 1.0, as_generator(rng), channels, scale, n_chains, optics, tips, stalks
    )
    return image[0], labels[0]


def make_egg_chamber_stack(
    shape: tuple[int, int, int] = (8, 256, 256),
    *,
    rng: Seed = None,
    channels: int = 3,
    scale: float = 1.0,
    z_spacing: float = 4.0,
    n_chains: int | None = None,
    optics: Optics = SHARP,
    tips: bool = False,
    stalks: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a z-stack of slices through the same 3-D scene, and its exact labels.

    Parameters
    ----------
    shape
        (planes, height, width).
    rng
        Seed or numpy Generator; the same seed gives the same output.
    channels
        3 for RGB, 1 for greyscale.
    scale
        Size of the chambers relative to the real slices (1.0: same pixel size).
    z_spacing
        Distance between planes, in in-plane pixels.
    n_chains
        Number of chains of chambers; random (1 to 3) when None.
    optics
        PSF and glow (:class:`Optics`; default :data:`SHARP`).
    tips
        Chains end in an elongated germarium (:func:`make_egg_chamber_slice`).
    stalks
        Neighbouring chambers joined by stalks (:func:`make_egg_chamber_slice`).

    Returns
    -------
    image : numpy.ndarray
        uint8, (Z, H, W, 3) or (Z, H, W) when ``channels == 1``.
    labels : numpy.ndarray
        uint8 (Z, H, W) with the classes of :func:`make_egg_chamber_slice`.
    """
    _check(tuple(shape), 3, channels)
    nz, h, w = shape
    return _render(
        (nz, h, w), z_spacing, as_generator(rng), channels, scale, n_chains, optics, tips, stalks
    )
