"""Reading and writing label images (0 = background, 1..K = classes) as compressed TIFF."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .atomic import atomic_output
from .calibration import checked_spacing, resolution
from .images import PLAIN_SUFFIXES, TIFF_SUFFIXES


def labels_dtype(num_classes: int) -> np.dtype:
    """``uint8`` when labels 0..num_classes-1 fit in it, else ``uint16``."""
    if num_classes > 65536:
        raise InputError(f"{num_classes} classes do not fit in 16-bit labels")
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16)


def check_labels_and_probabilities(labels: np.ndarray, probabilities: np.ndarray | None) -> None:
    """Raise :class:`InputError` unless the labels and their probabilities fit each other.

    ``labels`` must be (Y, X) or (Z, Y, X), and ``probabilities`` (when given) (K, *labels.shape).
    """
    if labels.ndim not in (2, 3):
        raise InputError(f"labels must be (Y, X) or (Z, Y, X); got shape {labels.shape}")
    if probabilities is not None and tuple(probabilities.shape[1:]) != labels.shape:
        raise InputError(
            f"probabilities shaped {probabilities.shape} do not match labels shaped "
            f"{labels.shape}; expected (K, {', '.join(map(str, labels.shape))})"
        )


def write_labels(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    *,
    overwrite: bool = False,
    class_names: list[str] | None = None,
    spacing: Sequence[float] | None = None,
    unit: str | None = None,
) -> Path:
    """Write a YX or ZYX label image as zlib-compressed TIFF, atomically.

    ``spacing`` (pixel size, (y, x) or (z, y, x), e.g. a layer's ``scale``) and ``unit`` are
    recorded as ImageJ metadata, which Fiji and tifffile read back.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3) or labels.dtype.kind not in "ui":
        raise InputError(
            f"labels must be a 2D or 3D integer array; got {labels.ndim}D {labels.dtype}"
        )
    return write_label_pages(
        path,
        iter(labels) if labels.ndim == 3 else iter([labels]),
        shape=labels.shape,
        dtype=labels.dtype,
        overwrite=overwrite,
        class_names=class_names,
        spacing=spacing,
        unit=unit,
    )


def write_label_pages(
    path: str | os.PathLike[str],
    pages: Iterable[np.ndarray],
    *,
    shape: tuple[int, ...],
    dtype: np.dtype,
    overwrite: bool = False,
    class_names: list[str] | None = None,
    spacing: Sequence[float] | None = None,
    unit: str | None = None,
) -> Path:
    """Write labels page by page as they are produced, so a stack is never held in memory.

    ``pages`` yields one (Y, X) array per Z slice (one page for a 2D image). The file appears under
    its final name only once every page is written. With a ``spacing`` other than all ones
    the file is an ImageJ TIFF that records it (z spacing, unit, resolution tags), with the
    class names among its properties; otherwise a plain TIFF with tifffile's metadata.
    """
    import tifffile

    axes = "ZYX" if len(shape) == 3 else "YX"
    metadata: dict[str, object] = {"axes": axes}
    calibrated = checked_spacing(spacing, len(shape))
    options: dict[str, object] = {}
    if calibrated is not None:
        options = {"imagej": True, "resolution": resolution(calibrated)}
        if len(calibrated) == 3:
            metadata["spacing"] = calibrated[0]
        if unit:
            metadata["unit"] = unit
        if class_names:
            metadata["Properties"] = {"class_names": json.dumps(list(class_names))}
    else:
        options = {"photometric": "minisblack"}
        if class_names:
            metadata["class_names"] = list(class_names)
    page_shape = tuple(shape[-2:])
    checked = (_checked_page(p, page_shape, dtype) for p in pages)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(
            tmp,
            data=checked,
            shape=tuple(shape),
            dtype=np.dtype(dtype),
            compression="zlib",
            metadata=metadata,
            **options,  # type: ignore[arg-type]
        )
    return Path(path)


def _checked_page(page: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    page = np.asarray(page)
    if page.shape != shape:
        raise InputError(f"label page shaped {page.shape}, expected {shape}")
    return page.astype(dtype, copy=False)


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label image (TIFF or PNG) as an integer array shaped YX or ZYX."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such label file; check the path")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            labels = tifffile.imread(path)
        elif suffix in PLAIN_SUFFIXES:
            from skimage import io as skio

            labels = skio.imread(path)
        else:
            raise InputError(f"{path}: labels must be TIFF or PNG, not {suffix!r}")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot read labels (truncated or corrupt?): {exc}") from None
    labels = np.asarray(labels)
    if labels.dtype.kind not in "ui":
        if labels.dtype.kind == "f" and np.isfinite(labels).all() and np.all(labels % 1 == 0):
            labels = labels.astype(np.int64)
        else:
            raise InputError(f"{path}: labels must be integers, got {labels.dtype}")
    if labels.ndim == 3 and labels.shape[-1] in (3, 4) and suffix in PLAIN_SUFFIXES:
        raise InputError(f"{path}: labels are a colour image; save them as single-channel labels")
    if labels.ndim not in (2, 3):
        raise InputError(f"{path}: labels must be YX or ZYX, got shape {labels.shape}")
    return labels
