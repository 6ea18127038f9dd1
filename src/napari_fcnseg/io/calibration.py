"""Pixel size in the TIFFs we write and read: a label image keeps the scan's calibration.

Written as ImageJ metadata (what Fiji and tifffile read: ``spacing`` for z, ``unit``, and the
XResolution / YResolution tags in pixels per unit) for label images, and, for the per-slice
outputs written page by page (uncertainty, objects), as the resolution tags plus ``spacing``
and ``unit`` in tifffile's shaped (JSON) description, which ImageJ's format cannot carry for
pages appended one at a time. :func:`tiff_spacing` reads both back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InputError


def checked_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    """``spacing`` as floats for a (Y, X) or (Z, Y, X) image (the last ``ndim`` values kept).

    A napari layer's ``scale`` may have more entries than the labels have axes (a time axis,
    say): the trailing ones are the spatial ones. ``None`` or all ones (no calibration) gives
    ``None``.
    """
    if spacing is None:
        return None
    values = tuple(float(s) for s in spacing)[-ndim:]
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(
            f"pixel size {tuple(spacing)} does not fit a {ndim}D image: give {ndim} positive "
            "sizes (z, y, x) or (y, x)"
        )
    if all(s == 1.0 for s in values):
        return None
    return values


def resolution(spacing: Sequence[float]) -> tuple[float, float]:
    """TIFF (XResolution, YResolution) in pixels per unit for a (..., y, x) pixel size."""
    return 1.0 / float(spacing[-1]), 1.0 / float(spacing[-2])


def tiff_spacing(tif: Any) -> tuple[tuple[float, float, float], str | None] | None:
    """Physical (z, y, x) voxel size and unit recorded in an open ``tifffile.TiffFile``.

    Reads ImageJ metadata (``spacing`` and ``unit``) or our shaped metadata, and the first
    page's XResolution / YResolution tags; ``None`` when the file records none of them.
    """
    meta: Mapping[str, Any] = {}
    for candidate in (getattr(tif, "imagej_metadata", None), _shaped(tif)):
        if isinstance(candidate, Mapping) and ("spacing" in candidate or "unit" in candidate):
            meta = candidate
            break
    z = meta.get("spacing")
    unit = meta.get("unit")
    y = x = None
    try:
        tags = tif.pages[0].tags
        xres, yres = tags.get("XResolution"), tags.get("YResolution")
        if xres is not None and yres is not None:
            x, y = _per_pixel(xres.value), _per_pixel(yres.value)
    except (AttributeError, IndexError, ZeroDivisionError):
        pass
    if isinstance(z, Sequence) and not isinstance(z, str):
        values = [float(v) for v in z]
        z, y, x = (values[-3] if len(values) == 3 else None), values[-2], values[-1]
    if z is None and x in (None, 1.0) and y in (None, 1.0):
        return None  # the tags' default of 1 pixel per unit, and no z: not calibrated
    return (float(z or 1.0), float(y or 1.0), float(x or 1.0)), (str(unit) if unit else None)


def _per_pixel(value: Any) -> float | None:
    if isinstance(value, tuple):
        numerator, denominator = value
        pixels_per_unit = numerator / denominator if denominator else 0.0
    else:
        pixels_per_unit = float(value)
    return 1.0 / pixels_per_unit if pixels_per_unit > 0 else None


def _shaped(tif: Any) -> Mapping[str, Any] | None:
    shaped = getattr(tif, "shaped_metadata", None)
    return shaped[0] if shaped else None
