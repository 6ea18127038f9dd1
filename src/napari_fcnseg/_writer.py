"""npe2 writer: a Labels layer to a zlib-compressed TIFF (YX or ZYX)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .io.labels import write_labels


def write_labels_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer's data atomically; return the written path.

    napari's save dialog has already asked before replacing an existing file, so this writer
    overwrites; the write is atomic, so a failure never leaves a half-written file. The
    layer's ``scale`` (and its ``units``, when napari gives them) is recorded as the TIFF's
    pixel size.
    """
    labels = np.asarray(data)
    if labels.dtype.kind not in "ui":
        labels = labels.astype(np.uint16 if labels.max() > 255 else np.uint8)
    if labels.dtype.itemsize > 2 and labels.max() < 65536 and labels.min() >= 0:
        labels = labels.astype(np.uint16 if labels.max() > 255 else np.uint8)
    scale = meta.get("scale")
    spacing = tuple(float(s) for s in scale)[-labels.ndim :] if scale is not None else None
    return [str(write_labels(path, labels, overwrite=True, spacing=spacing, unit=_unit(meta)))]


def _unit(meta: dict[str, Any]) -> str | None:
    """One unit name for the spatial axes, or ``None`` when napari gives none or several."""
    units = meta.get("units")
    if not units:
        return None
    names = {str(u) for u in units}
    if len(names) != 1 or names & {"pixel", "px", ""}:
        return None
    return names.pop()
