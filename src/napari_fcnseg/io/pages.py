"""A TIFF written one Z page at a time, beside labels that are written the same way.

Used for the per-pixel outputs that accompany the labels of a stack (the uncertainty of
``fcnseg predict --uncertainty``, the objects of ``--instances``): the pages arrive with the
labels' pages, so neither output holds the whole stack in memory. The file appears under its
name only when complete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..errors import InputError
from .atomic import atomic_output
from .calibration import checked_spacing, resolution


@contextlib.contextmanager
def page_writer(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, ...],
    dtype: np.dtype | type = np.float32,
    overwrite: bool = False,
    spacing: Sequence[float] | None = None,
    unit: str | None = None,
) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``write(page)`` for the (Y, X) pages of an image shaped ``shape``, of ``dtype``.

    ``shape`` is (Y, X) or (Z, Y, X); the block must write exactly that many pages, in order.
    The TIFF (one series, axes metadata ``YX`` or ``ZYX``) is moved into place when the
    block ends; an error in the block leaves nothing under ``path``. ``spacing`` and ``unit``
    are recorded as the resolution tags and in the description
    (:func:`~.calibration.tiff_spacing` reads them).
    """
    import tifffile

    metadata: dict[str, object] = {"axes": "ZYX" if len(shape) == 3 else "YX", "shape": list(shape)}
    calibrated = checked_spacing(spacing, len(shape))
    extra: dict[str, object] = {}
    if calibrated is not None:
        metadata["spacing"] = list(calibrated)
        extra["resolution"] = resolution(calibrated)
    if unit and calibrated is not None:
        metadata["unit"] = unit
    page_shape = tuple(shape[-2:])
    expected = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
    written = 0
    with atomic_output(path, overwrite=overwrite) as tmp, tifffile.TiffWriter(tmp) as tiff:

        def write(page: np.ndarray) -> None:
            nonlocal written
            page = np.asarray(page).astype(dtype, copy=False)
            if page.shape != page_shape:
                raise InputError(f"page shaped {page.shape}, expected {page_shape}")
            if written >= expected:
                raise InputError(f"{path}: more than the {expected} page(s) of {shape}")
            # Contiguous pages form one (Z, Y, X) series; tifffile's contiguous mode writes them
            # uncompressed (floats in [0, 1] gain little from zlib anyway; object labels are small).
            tiff.write(
                page,
                contiguous=True,
                photometric="minisblack",
                metadata=metadata,
                **extra,  # type: ignore[arg-type]
            )
            written += 1

        yield write
        if written != expected:
            raise InputError(f"{path}: {written} of {expected} page(s) were written")
