"""Fill the holes of the foreground: for objects that are solid, such as egg chambers.

An egg chamber is one solid region in its annotation (none of the shared real slices'
annotated egg chambers has a hole), but the U-Net's mask can have holes where a chamber's
inside is dark (the cytoplasm between nurse-cell nuclei). A model whose file says
``fill_holes`` (:class:`~napari_fcnseg.model.checkpoint.ModelInfo`; the bundled egg models do)
has every background region that the foreground encloses given to the foreground. What this
changes on the shared slices is measured in ``benchmarks/README.md`` ("Egg chambers on real
slices").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..io.labels import check_labels_and_probabilities


def fill_foreground_holes(
    labels: np.ndarray, probabilities: np.ndarray | None = None
) -> np.ndarray:
    """Return ``labels`` (Y, X) or (Z, Y, X) with the holes of the foreground (label > 0) filled.

    A stack is filled slice by slice: a hole is background that the foreground of its own
    slice encloses (a region open to the image border is not a hole). With two classes a hole
    becomes class 1; with more, each hole pixel takes its most probable class above the
    background (``probabilities``, shaped (K, *labels.shape)), or class 1 without them.
    """
    labels = np.asarray(labels)
    check_labels_and_probabilities(labels, probabilities)
    out = labels.copy()
    planes = out[None] if out.ndim == 2 else out  # views of ``out``, one (Y, X) plane each
    classes = None
    if probabilities is not None and probabilities.shape[0] > 2:
        above = probabilities[1:]
        classes = above[:, None] if labels.ndim == 2 else above  # (K - 1, Z, Y, X)
    for z, plane in enumerate(planes):
        foreground = plane > 0
        holes = ndi.binary_fill_holes(foreground) & ~foreground
        if classes is None:
            plane[holes] = 1
        elif holes.any():
            plane[holes] = 1 + classes[:, z][:, holes].argmax(axis=0)
    return out
