"""Refine class probabilities with a fully connected CRF ("Refine with CRF").

The CRF is the dense CRF of Krähenbühl & Koltun (2011), run with :class:`~..model.crf_rnn.CrfRnn`
in its untrained (Potts) state, i.e. what pydensecrf computes with::

    d.setUnaryEnergy(-log(clip(probabilities)))
    d.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    d.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=image, compat=...)
    Q = d.inference(iterations)

Parameters follow pydensecrf's names and meaning. Image intensities are first scaled per
channel so that ``bilateral_srgb`` is in the units of an 8-bit image whatever the dtype: each
channel's 0.5-99.5 percentile range (over the whole image or stack) is mapped to 0-255 and
clipped. A stack is refined slice by slice (2D CRFs) unless ``spacing`` is given; with
``spacing=(z, y, x)`` it is one 3D CRF whose kernels are measured in those physical units.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..model.crf_rnn import MIN_PROBABILITY as MIN_PROBABILITY  # re-exported (public name)
from ..model.crf_rnn import CrfRnn, probability_logits, scale_channels_last
from .device import resolve_device
from .progress import Progress, run_to_completion

logger = logging.getLogger(__name__)

#: Default parameters, e.g. for CLI and widget help texts. They are pydensecrf's usual settings
#: except two, both measured on the shared ovary slices (benchmarks/bench_crf_quality.py):
#: ``bilateral_srgb`` 8 instead of 13 (after the percentile stretch, 13 let the bilateral kernel
#: join egg and background of similar colour), and ``bilateral_sxy`` 20 instead of 80: with
#: 80 px, background next to an egg chamber collected support from distant chamber pixels of the
#: same colour, so the CRF grew the masks, almost always wrongly. 20 px raised the IoU on every
#: shared slice, and a leave-one-slice-out choice picks it for each slice (benchmarks/README.md,
#: "Egg chambers on real slices").
DEFAULTS: dict[str, Any] = {
    "iterations": 5,
    "gaussian_sxy": 3.0,
    "gaussian_compat": 3.0,
    "bilateral_sxy": 20.0,
    "bilateral_srgb": 8.0,
    "bilateral_compat": 10.0,
}


def refine_with_crf(
    image: np.ndarray,
    probabilities: np.ndarray,
    *,
    iterations: int = 5,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 20.0,
    bilateral_srgb: float = 8.0,
    bilateral_compat: float = 10.0,
    spacing: Sequence[float] | None = None,
    device: str | torch.device = "auto",
    bilateral_downsample: int | None = None,
) -> np.ndarray:
    """Refine per-pixel class probabilities with a dense CRF.

    Parameters
    ----------
    image
        ``(H, W)``, ``(H, W, C)``, ``(Z, H, W)`` or ``(Z, H, W, C)`` (channels last), any dtype.
        Each channel's 0.5-99.5 percentile range is mapped to 0-255 (and clipped) first.
    probabilities
        ``(K, H, W)`` or ``(K, Z, H, W)`` class probabilities, K >= 2. They need not sum to 1;
        the unary energy is ``-log(clip(p, 1e-5, 1))``.
    iterations
        Mean-field steps.
    gaussian_sxy, gaussian_compat
        Bandwidth (pixels, or physical units with ``spacing``) and weight of the spatial kernel.
    bilateral_sxy, bilateral_srgb, bilateral_compat
        Spatial bandwidth, intensity bandwidth (0-255 units after the percentile stretch) and
        weight of the bilateral kernel. ``bilateral_sxy`` defaults to 20 and ``bilateral_srgb``
        to 8, not pydensecrf's usual 80 and 13: see :data:`DEFAULTS`.
    spacing
        ``None``: a stack is refined slice by slice with 2D CRFs. ``(z, y, x)`` (or ``(y, x)`` for
        a 2D image): one CRF over the whole volume, with pixel sizes in the units of the sxy
        bandwidths, e.g. ``(4, 1, 1)`` for slices 4 pixels apart.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    bilateral_downsample
        Block size of the bilateral lattice (``None``: 2 for ``bilateral_sxy`` 20-59 px, 3 for
        60-79, 4 for 80-199, finer on small images; 1 = full resolution, slower and closer to
        pydensecrf).

    Returns
    -------
    numpy.ndarray
        Refined probabilities, float32, same shape as ``probabilities``; they sum to 1 over K.

    Raises
    ------
    InputError
        When the shapes do not match, values are NaN or negative, K < 2, or a parameter is invalid.
    """
    return run_to_completion(
        iter_refine_with_crf(
            image,
            probabilities,
            iterations=iterations,
            gaussian_sxy=gaussian_sxy,
            gaussian_compat=gaussian_compat,
            bilateral_sxy=bilateral_sxy,
            bilateral_srgb=bilateral_srgb,
            bilateral_compat=bilateral_compat,
            spacing=spacing,
            device=device,
            bilateral_downsample=bilateral_downsample,
        )
    )


def iter_refine_with_crf(
    image: np.ndarray,
    probabilities: np.ndarray,
    *,
    iterations: int = 5,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 20.0,
    bilateral_srgb: float = 8.0,
    bilateral_compat: float = 10.0,
    spacing: Sequence[float] | None = None,
    device: str | torch.device = "auto",
    bilateral_downsample: int | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """Refine like :func:`refine_with_crf`, yielding :class:`Progress` and returning the result.

    A stack refined slice by slice yields once per slice; a single 2D image or a 3D CRF yields
    once per mean-field step. Closing the generator stops the work at the next yield.
    """
    probs = np.asarray(probabilities)
    img = np.asarray(image)
    spatial_ndim = _check_probabilities(probs)
    _check_image(img, probs.shape[1:])
    _check_parameters(
        iterations=iterations,
        gaussian_sxy=gaussian_sxy,
        gaussian_compat=gaussian_compat,
        bilateral_sxy=bilateral_sxy,
        bilateral_srgb=bilateral_srgb,
        bilateral_compat=bilateral_compat,
    )
    spacing_t = _check_spacing(spacing, spatial_ndim)
    dev = resolve_device(device)
    crf = CrfRnn(
        probs.shape[0],
        int(iterations),
        spatial_sigma=gaussian_sxy,
        spatial_weight=gaussian_compat,
        bilateral_spatial_sigma=bilateral_sxy,
        bilateral_intensity_sigma=bilateral_srgb,
        bilateral_weight=bilateral_compat,
        bilateral_downsample=bilateral_downsample,
        normalize_image=False,
    ).to(dev)
    # (C, *spatial) float32, scaled once for the whole image or stack: on the device for one CRF,
    # on the host for a stack refined slice by slice (which need not fit on the device).
    by_slice = spatial_ndim == 3 and spacing_t is None
    scaled = scale_channels_last(img, spatial_ndim, device="cpu" if by_slice else dev)
    out = np.empty(probs.shape, dtype=np.float32)
    # Grad mode is switched off around each piece of work, never across a yield: a context
    # manager held over a yield would leak into the caller's code.
    if by_slice:
        total = probs.shape[1]
        for z in range(total):
            with torch.no_grad():
                out[:, z] = _run(crf, scaled[:, z], probs[:, z], None, dev)
            yield Progress(z + 1, total, f"CRF: slice {z + 1}/{total}")
        return out
    total = int(iterations)
    with torch.no_grad():
        logits = probability_logits(probs, dev)
        steps = crf.mean_field(logits, scaled, spacing_t)
        q = logits.softmax(0)
    yield Progress(0, total, "CRF: starting")
    for i in range(1, total + 1):
        with torch.no_grad():
            q = next(steps)
        yield Progress(i, total, f"CRF: mean-field step {i}/{total}")
    out[...] = q.float().cpu().numpy()
    return out


# ------------------------------------------------------------------------------------ helpers
def _run(
    crf: CrfRnn,
    image: torch.Tensor,
    probs: np.ndarray,
    spacing: tuple[float, ...] | None,
    device: torch.device,
) -> np.ndarray:
    logits = probability_logits(probs, device)
    final = run_to_completion(crf.mean_field(logits, image.to(device), spacing))
    return final.softmax(0).float().cpu().numpy()


def _check_probabilities(probs: np.ndarray) -> int:
    if probs.ndim not in (3, 4):
        raise InputError(
            f"probabilities have shape {probs.shape}; expected (K, H, W) for an image or "
            f"(K, Z, H, W) for a stack, with the K classes first"
        )
    if probs.shape[0] < 2:
        raise InputError(
            f"probabilities have {probs.shape[0]} class along the first axis; the CRF needs at "
            f"least 2 (for one foreground map p, pass np.stack([1 - p, p]))"
        )
    if not np.issubdtype(probs.dtype, np.floating):
        raise InputError(
            f"probabilities have dtype {probs.dtype}; pass floating-point probabilities in [0, 1]"
        )
    if not np.isfinite(probs).all():
        raise InputError("probabilities contain NaN or infinite values; fix or mask them first")
    if probs.min() < 0:
        raise InputError(
            f"probabilities contain negative values (min {probs.min():.3g}); pass softmax "
            f"probabilities in [0, 1], not logits"
        )
    return probs.ndim - 1


def _check_image(img: np.ndarray, spatial: tuple[int, ...]) -> None:
    nd = len(spatial)
    expected = "(H, W) or (H, W, C)" if nd == 2 else "(Z, H, W) or (Z, H, W, C)"
    if img.ndim not in (nd, nd + 1) or tuple(img.shape[:nd]) != tuple(spatial):
        size = "x".join(str(n) for n in spatial)
        raise InputError(
            f"image has shape {img.shape} but the probabilities are {size}; give the image as "
            f"{expected} with the same size (channels last)"
        )
    if img.dtype == bool or not (np.issubdtype(img.dtype, np.number) and not np.iscomplexobj(img)):
        raise InputError(f"image has dtype {img.dtype}; pass a real-valued numeric image")
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        raise InputError("image contains NaN or infinite values; replace them (e.g. with 0)")


def _check_parameters(**params: float) -> None:
    for name, value in params.items():
        if not (isinstance(value, (int, float, np.number)) and math.isfinite(float(value))):
            raise InputError(f"CRF parameter {name}={value!r} must be a finite number")
    if int(params["iterations"]) != params["iterations"] or params["iterations"] < 0:
        raise InputError(f"iterations={params['iterations']!r}: give a whole number >= 0")
    for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
        if params[name] <= 0:
            raise InputError(f"CRF bandwidth {name}={params[name]!r} must be positive")


def _check_spacing(spacing: Sequence[float] | None, nd: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    values = tuple(float(s) for s in spacing)
    if len(values) != nd or not all(math.isfinite(s) and s > 0 for s in values):
        axes = "(y, x)" if nd == 2 else "(z, y, x)"
        raise InputError(
            f"spacing={tuple(spacing)} does not fit a {nd}D input: give {nd} positive pixel "
            f"sizes {axes}, or None"
        )
    return values
