"""npe2 writers: a Labels layer to a zlib-compressed TIFF (YX or ZYX) or to OME-Zarr."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .io.labels import write_labels


def write_labels_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer's data atomically; return the written path.

    napari's save dialog has already asked before replacing an existing file, so this writer
    overwrites; the write is atomic, so a failure never leaves a half-written file. The
    layer's ``scale`` (and its ``units``, when napari gives them) is recorded as the TIFF's
    pixel size.
    """
    labels = _integer_labels(np.asarray(data))
    scale = meta.get("scale")
    spacing = tuple(float(s) for s in scale)[-labels.ndim :] if scale is not None else None
    return [str(write_labels(path, labels, overwrite=True, spacing=spacing, unit=_unit(meta)))]


def _integer_labels(labels: np.ndarray) -> np.ndarray:
    """Labels as the smallest unsigned type that holds them (napari keeps int32/int64)."""
    if labels.dtype.kind not in "ui":
        labels = labels.astype(np.uint16 if labels.max() > 255 else np.uint8)
    if labels.dtype.itemsize > 2 and labels.max() < 65536 and labels.min() >= 0:
        labels = labels.astype(np.uint16 if labels.max() > 255 else np.uint8)
    return labels


def _unit(meta: dict[str, Any]) -> str | None:
    """One unit name for the spatial axes, or ``None`` when napari gives none or several."""
    units = meta.get("units")
    if not units:
        return None
    names = {str(u) for u in units}
    if len(names) != 1 or names & {"pixel", "px", ""}:
        return None
    return names.pop()


def write_labels_layer_ome_zarr(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer as OME-Zarr labels (a pyramid, NGFF metadata); return the path.

    The layer's ``scale`` becomes the NGFF pixel size and a ``class`` feature (as the
    plugin's layers have) the class names. Like the TIFF writer it replaces an existing
    output, napari's dialog having asked first.
    """
    from .io.ome_zarr import write_ome_zarr_labels

    labels = _integer_labels(np.asarray(data))
    if labels.ndim not in (2, 3):
        raise InputError(f"labels must be 2D or 3D to save as OME-Zarr; got {labels.ndim}D")
    scale = meta.get("scale")
    spacing = tuple(float(s) for s in scale)[-labels.ndim :] if scale is not None else None
    pages = iter(labels) if labels.ndim == 3 else iter([labels])
    written = write_ome_zarr_labels(
        path,
        pages,
        shape=labels.shape,
        dtype=labels.dtype,
        class_names=_class_names(meta, int(labels.max(initial=0))),
        spacing=spacing,
        overwrite=True,
    )
    return [str(written)]


def _class_names(meta: dict[str, Any], largest: int) -> list[str]:
    """Return the layer's ``class`` feature in label order, else background, class 1, ..."""
    features = meta.get("features")
    names: list[str] = []
    try:
        if features is not None and "class" in features and "index" in features:
            by_index = dict(zip(features["index"], features["class"], strict=True))
            names = [str(by_index[i]) for i in range(len(by_index)) if i in by_index]
    except (TypeError, ValueError):
        names = []
    if len(names) <= largest:
        names = ["background", *(f"class {k}" for k in range(1, largest + 1))]
    return names
