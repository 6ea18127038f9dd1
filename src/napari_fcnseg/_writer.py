"""npe2 writer: a Labels layer to a zlib-compressed TIFF (YX or ZYX)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .io.labels import write_labels


def write_labels_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer's data atomically; return the written path.

    napari's save dialog has already asked before replacing an existing file, so this writer
    overwrites; the write is atomic, so a failure never leaves a half-written file.
    """
    labels = np.asarray(data)
    if labels.dtype.kind not in "ui":
        labels = labels.astype(np.uint16 if labels.max() > 255 else np.uint8)
    if labels.dtype.itemsize > 2 and labels.max() < 65536 and labels.min() >= 0:
        labels = labels.astype(np.uint16 if labels.max() > 255 else np.uint8)
    return [str(write_labels(path, labels, overwrite=True))]
