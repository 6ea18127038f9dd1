"""Egg chambers as objects: split a foreground mask into one label per chamber, and measure them.

:func:`split_instances` cuts touching chambers apart along the thin gap between them: a
watershed on the (smoothed) distance to the background, seeded by the distance maxima that rise
at least ``h`` pixels above the saddle to their neighbours. A round chamber has one such
maximum; two chambers joined by a narrow neck have two, so they are split at the neck, while
the shallow ridges inside one large chamber are not. The distance is measured as if the mask
went on past the image border, so a chamber cut by the border stays one object. Measured on
the shared real slices against connected components and a plain distance watershed in
``benchmarks/README.md`` ("Egg chambers as objects").

:func:`object_table` measures each object with :func:`skimage.measure.regionprops_table`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError

#: Marker depth (pixels of distance) and smoothing of the distance map: see the module text.
DEFAULT_H = 3.0
DEFAULT_SMOOTH = 2.0
#: Objects smaller than this (pixels) are dropped as debris.
DEFAULT_MIN_AREA = 200


def split_instances(
    mask: np.ndarray,
    *,
    h: float = DEFAULT_H,
    smooth: float = DEFAULT_SMOOTH,
    min_area: int = DEFAULT_MIN_AREA,
) -> np.ndarray:
    """Label each object of a (Y, X) or (Z, Y, X) foreground mask; uint16, 0 = background.

    A stack is split slice by slice, with labels numbered on through the stack (each label
    belongs to one slice).
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim == 3:
        out = np.zeros(mask.shape, dtype=np.uint16)
        offset = 0
        for z in range(mask.shape[0]):
            labels = split_instances(mask[z], h=h, smooth=smooth, min_area=min_area)
            out[z] = np.where(labels > 0, labels + offset, 0)
            offset += int(labels.max())
        return out
    if mask.ndim != 2:
        raise InputError(f"instances need a (Y, X) or (Z, Y, X) mask, got shape {mask.shape}")
    from skimage import measure, morphology, segmentation

    filled = ndi.binary_fill_holes(mask)
    if not filled.any():
        return np.zeros(mask.shape, dtype=np.uint16)
    # Pad with the edge so that the border is not background: a cut chamber stays one object.
    distance = ndi.distance_transform_edt(np.pad(filled, 1, mode="edge"))[1:-1, 1:-1]
    distance = ndi.gaussian_filter(distance, smooth)
    markers = measure.label(morphology.h_maxima(distance, h))
    labels = segmentation.watershed(-distance, markers, mask=filled)
    sizes = np.bincount(labels.ravel())
    labels[np.isin(labels, np.flatnonzero(sizes < min_area))] = 0
    relabelled, _, _ = segmentation.relabel_sequential(labels)
    if relabelled.max() > np.iinfo(np.uint16).max:
        raise InputError("more than 65535 objects in one slice: is the mask right?")
    return relabelled.astype(np.uint16)


def object_table(
    instances: np.ndarray,
    image: np.ndarray | None = None,
    *,
    scale: Sequence[float] | None = None,
    unit: str = "px",
) -> dict[str, np.ndarray]:
    """Measure each object of a (Y, X) label image: one row per label, as columns.

    Columns: ``label``, ``area_px``, ``area`` (in ``unit`` squared with ``scale`` = (y, x) pixel
    size, else equal to ``area_px``), ``centroid_y``, ``centroid_x`` (pixels),
    ``major_axis_length``, ``minor_axis_length`` (pixels), ``orientation`` (radians),
    ``eccentricity``, ``touches_border``, and with ``image`` (Y, X) or (Y, X, C) the mean
    intensity per channel (``mean_intensity_0``, ...).
    """
    from skimage.measure import regionprops_table

    labels = np.asarray(instances)
    if labels.ndim != 2:
        raise InputError(f"object_table measures one (Y, X) slice, got shape {labels.shape}")
    properties = [
        "label",
        "area",
        "centroid",
        "axis_major_length",
        "axis_minor_length",
        "orientation",
        "eccentricity",
        "bbox",
    ]
    intensity = None
    if image is not None:
        intensity = np.asarray(image)
        if intensity.shape[:2] != labels.shape:
            raise InputError(
                f"the image is shaped {intensity.shape}, the objects {labels.shape}: "
                "give the image the objects were found in"
            )
        properties.append("intensity_mean")
    table = regionprops_table(labels.astype(np.int64), intensity, properties=properties)
    pixel_area = float(np.prod(scale)) if scale is not None else 1.0
    height, width = labels.shape
    columns: dict[str, np.ndarray] = {
        "label": table["label"].astype(np.int64),
        "area_px": table["area"].astype(np.int64),
        "area": table["area"] * pixel_area,
        "centroid_y": table["centroid-0"],
        "centroid_x": table["centroid-1"],
        "major_axis_length": table["axis_major_length"],
        "minor_axis_length": table["axis_minor_length"],
        "orientation": table["orientation"],
        "eccentricity": table["eccentricity"],
        "touches_border": (table["bbox-0"] == 0)
        | (table["bbox-1"] == 0)
        | (table["bbox-2"] == height)
        | (table["bbox-3"] == width),
    }
    if intensity is not None:
        keys = sorted(k for k in table if k.startswith("intensity_mean"))
        for i, key in enumerate(keys):
            columns[f"mean_intensity_{i}"] = table[key]
    columns["area"] = np.asarray(columns["area"], dtype=np.float64)
    columns["area_unit"] = np.full(
        len(columns["label"]), f"{unit}^2" if scale is not None else "px^2"
    )
    return columns


def stack_object_table(objects: np.ndarray, image: Any = None) -> dict[str, np.ndarray]:
    """:func:`object_table` of a (Y, X) or (Z, Y, X) label image; a stack's rows get a ``z``."""
    objects = np.asarray(objects)
    if objects.ndim == 2:
        return object_table(objects, None if image is None else np.asarray(image))
    parts = [
        object_table(objects[z], None if image is None else np.asarray(image[z]))
        for z in range(objects.shape[0])
    ]
    for z, part in enumerate(parts):
        part["z"] = np.full(len(part["label"]), z)
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def measured_objects(
    labels: np.ndarray, image: Any = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Split a semantic label image (> 0 is an egg chamber) into objects and measure them."""
    objects = split_instances(np.asarray(labels) > 0)
    return objects, stack_object_table(objects, image)
