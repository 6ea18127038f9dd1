"""Geometry of synthetic egg chambers: ellipsoids in chains, nurse-cell nuclei, planar cuts.

Positions are (z, y, x) in pixels; the image plane of a single slice is z = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Chamber:
    """One ellipsoidal egg chamber; positions are (z, y, x) in pixels."""

    center: np.ndarray
    angle: float  # of the long axis in the image plane, radians
    axes: np.ndarray  # semi-axes: along the chain, across it, along z
    rim: float  # follicle-layer thickness
    harmonics: np.ndarray  # (k, amplitude, phase) rows: smooth deviations from an ellipse
    germarium: bool  # follicle cells only
    nuclei: np.ndarray  # (n, 5): z, y, x, radius, brightness
    brightness: float
    #: Centre of the chamber this one grew from, when a stalk joins them; its radius (px).
    link: np.ndarray | None = None
    stalk: float = 0.0


def _nurse_nuclei(rng: np.random.Generator, ch: Chamber) -> np.ndarray:
    """Place up to 15 non-overlapping spherical nuclei inside the chamber's inner ellipsoid."""
    inner = ch.axes - ch.rim
    oocyte = ch.axes[1] > 60 and rng.random() < 0.6  # big chambers: no nuclei at one pole
    cos, sin = np.cos(ch.angle), np.sin(ch.angle)
    out: list[list[float]] = []
    wanted = rng.integers(14, 20)
    for _ in range(200):
        if len(out) >= wanted:
            break
        r = inner[1] * rng.uniform(0.24, 0.36)
        p = rng.uniform(-1, 1, 3)
        if np.sum(p**2) > 1:
            continue
        # nurse cells pack around the mid-plane of the chamber: flatten their spread in z
        u, v, w = p * np.maximum(inner - 0.7 * r, 1.0) * [1, 1, 0.5]
        if oocyte and u > 0.45 * inner[0]:
            continue
        pos = ch.center + np.array([w, u * sin + v * cos, u * cos - v * sin])
        if any(np.linalg.norm(pos - q[:3]) < 0.85 * (r + q[3]) for q in np.array(out)):
            continue
        out.append([*pos, r, rng.uniform(0.7, 1.1)])
    return np.array(out, dtype=float).reshape(-1, 5)


def _chain(
    rng: np.random.Generator,
    hw: tuple[int, int],
    scale: float,
    tips: bool = False,
    stalks: bool = False,
) -> list[Chamber]:
    """Chambers along a gently curving path, growing in one direction from a germarium tip.

    ``tips``: the chain ends, where its chambers would shrink below germarium size, in one
    germarium as the real slices show it (an elongated bud of densely packed cells, labelled
    follicle cells only in ``annot_struct``) instead of ever smaller round buds.
    ``stalks``: most neighbours are joined by a stalk of dim tissue (:attr:`Chamber.link`),
    which fills the neck between them as the real slices show it (labelled background there),
    and neighbours may lie a little further apart.
    """
    height, width = hw
    start = rng.uniform([0.15 * height, 0.15 * width], [0.85 * height, 0.85 * width])
    heading0 = rng.uniform(0, 2 * np.pi)
    b0, growth = scale * rng.uniform(25, 100), rng.uniform(1.2, 1.45)
    chambers: list[Chamber] = []
    for direction in (1, -1):
        pos, heading, b = start.copy(), heading0 + (direction < 0) * np.pi, b0
        prev_a, prev_b = None, b0
        # the backward pass grows from the start chamber (made by the forward pass)
        prev_centre = chambers[0].center if direction < 0 and chambers else None
        for _ in range(12):
            if direction < 0 and prev_a is None:
                prev_a = b * 1.2  # the start chamber is made by the forward pass
                b /= growth
            tip = tips and direction < 0 and prev_a is not None and b < 24 * scale
            if tip:
                b = scale * rng.uniform(18, 40)
            a = b * rng.uniform(1.2, 2.0) if tip else b * rng.uniform(1.0, 1.35)
            if prev_a is not None:
                heading += rng.normal(0, 0.25)
                gap = rng.uniform(-0.15, 0.12 if stalks else 0.01) * b
                pos = pos + (prev_a + a + gap) * np.array([np.sin(heading), np.cos(heading)])
            if not tip and (b > 160 * scale or b < 7 * scale):
                break
            if not (-a < pos[0] < height + a and -a < pos[1] < width + a):
                break
            c = b * rng.uniform(0.85, 1.05)
            rim = min(max(4.0 * scale, rng.uniform(0.09, 0.16) * b), 0.5 * b)
            ks = np.arange(1, 4)
            harm = np.stack([ks, rng.uniform(0, 0.07, 3) / ks, rng.uniform(0, 2 * np.pi, 3)], 1)
            ch = Chamber(
                np.array([rng.uniform(-0.4, 0.4) * c, *pos]),
                heading + rng.normal(0, 0.1),
                np.array([a, b, c]),
                rim,
                harm,
                tip or b < 24 * scale,
                np.zeros((0, 5)),
                rng.uniform(0.7, 1.1),
            )
            if not ch.germarium:
                ch.nuclei = _nurse_nuclei(rng, ch)
            if stalks:  # drawn last, so that the chain without stalks stays as it was
                joined, share = rng.random() < 0.75, rng.uniform(0.3, 0.6)
                if joined and prev_centre is not None:
                    ch.link, ch.stalk = prev_centre, share * min(b, prev_b)
            chambers.append(ch)
            prev_centre, prev_b = ch.center, b
            if tip:
                break
            prev_a, b = a, (b * growth if direction > 0 else b / growth)
    return chambers


def cut_stalk(
    ch: Chamber, z: float, hw: tuple[int, int]
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Bounding box and mask of the stalk from ``ch`` to its :attr:`~Chamber.link` in plane ``z``.

    The stalk is a tube of radius :attr:`~Chamber.stalk` between the two centres (in 3-D); a
    plane cuts it where it passes closer than that radius. Where it runs inside a chamber, the
    chamber is drawn over it.
    """
    if ch.link is None or ch.stalk <= 0:
        return None
    p0, p1 = ch.center, ch.link
    lo = np.maximum(np.floor(np.minimum(p0[1:], p1[1:]) - ch.stalk), 0).astype(int)
    hi = np.minimum(np.ceil(np.maximum(p0[1:], p1[1:]) + ch.stalk) + 1, hw).astype(int)
    if np.any(hi <= lo):
        return None
    yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1]]
    d = p1 - p0
    t = ((yy - p0[1]) * d[1] + (xx - p0[2]) * d[2]) / max(float(d[1] ** 2 + d[2] ** 2), 1e-6)
    t = np.clip(t, 0, 1)
    across = (yy - p0[1] - t * d[1]) ** 2 + (xx - p0[2] - t * d[2]) ** 2
    dz = z - (p0[0] + t * d[0])
    mask = across + dz**2 < ch.stalk**2
    box = (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])))
    return (box, mask) if mask.any() else None


#: A chamber cut by a plane: bounding box, depth below the surface, inner mask, polar angle.
Cut = tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray]


def cut_plane(ch: Chamber, z: float, hw: tuple[int, int]) -> Cut | None:
    """Depth below the outer surface and the inner mask of one chamber in the plane ``z``."""
    dz = z - ch.center[0]
    a, b, c = ch.axes
    if abs(dz) >= c:
        return None
    f = np.sqrt(1 - (dz / c) ** 2)
    reach = max(a, b) * f * (1 + ch.harmonics[:, 1].sum()) + 2
    y0, x0 = (max(0, int(q - reach)) for q in ch.center[1:])
    y1, x1 = (min(n, int(q + reach) + 2) for q, n in zip(ch.center[1:], hw, strict=True))
    if y1 <= y0 or x1 <= x0:
        return None
    yy, xx = np.ogrid[y0:y1, x0:x1]
    dy, dx = yy - ch.center[1], xx - ch.center[2]
    u = dx * np.cos(ch.angle) + dy * np.sin(ch.angle)
    v = dy * np.cos(ch.angle) - dx * np.sin(ch.angle)
    r, phi = np.hypot(u, v), np.arctan2(v, u)
    m = 1 + sum(amp * np.cos(k * phi + ph) for k, amp, ph in ch.harmonics)
    cos2, sin2 = np.cos(phi) ** 2, np.sin(phi) ** 2
    depth = m / np.sqrt(cos2 / (a * f) ** 2 + sin2 / (b * f) ** 2) - r
    inner = np.zeros(r.shape, bool)
    t = ch.rim
    if not ch.germarium and abs(dz) < c - t:
        fi = np.sqrt(1 - (dz / (c - t)) ** 2)
        inner = r < m / np.sqrt(cos2 / ((a - t) * fi) ** 2 + sin2 / ((b - t) * fi) ** 2)
    return (slice(y0, y1), slice(x0, x1)), depth.astype(np.float32), inner, phi


def make_scene(
    rng: np.random.Generator,
    hw: tuple[int, int],
    scale: float,
    n_chains: int | None,
    tips: bool = False,
    stalks: bool = False,
) -> list[Chamber]:
    """Draw 1 to 3 chains (or ``n_chains``); later chains must not run through earlier ones.

    ``tips``: chains end in an elongated germarium; ``stalks``: neighbours are joined by
    stalks (:func:`_chain`).
    """
    if n_chains is None:
        n_chains = 1 + int(rng.random() < 0.35) + int(rng.random() < 0.1)
    chambers: list[Chamber] = []
    for _ in range(n_chains):
        chambers += [
            ch
            for ch in _chain(rng, hw, scale, tips, stalks)
            if all(
                np.hypot(*(ch.center[1:] - o.center[1:])) > 0.9 * (ch.axes[0] + o.axes[0])
                for o in chambers
            )
        ]
    return chambers
