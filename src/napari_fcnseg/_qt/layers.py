"""Reading images from napari layers and writing results into Labels layers without losing edits.

A Labels layer written by the plugin carries a :class:`~napari_fcnseg.core.edits.PredictionRecord`
in ``layer.metadata["fcnseg"]``: the labels as predicted, the class probabilities (for the CRF)
and the slices marked as checked. :func:`write_labels` replaces a layer's data only when the
layer still holds exactly what the plugin put there; otherwise it adds a new layer and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
from napari.layers import Image, Labels, Layer
from napari.utils.colormaps import CyclicLabelColormap, DirectLabelColormap
from napari.utils.notifications import show_info

from ..core.edits import PredictionRecord, annotated_slices, is_edited
from ..errors import InputError
from ..io.axes import infer_layout, to_zyxc
from ..training.samples import TrainingSample

if TYPE_CHECKING:
    import napari

#: Key of the :class:`PredictionRecord` in a Labels layer's ``metadata``.
RECORD_KEY = "fcnseg"
#: Metadata key of the plugin's uncertainty layers (value: the image they describe).
UNCERTAINTY_KEY = "fcnseg_uncertainty_of"
#: Metadata key of the plugin's objects layers (value: a digest of the labels it wrote, so an
#: edited layer is never overwritten).
OBJECTS_KEY = "fcnseg_objects_digest"

L = TypeVar("L", Image, Labels)


def image_data(layer: Image) -> tuple[Any, str]:
    """Return the array of an Image layer and its axes (``YX``, ``YXC``, ``ZYX`` or ``ZYXC``)."""
    data = layer.data[0] if layer.multiscale else layer.data
    spatial = layer.ndim
    if spatial not in (2, 3):
        raise InputError(
            f"image layer {layer.name!r} has {spatial} dimensions (shape {tuple(data.shape)}); "
            "napari-fcnseg segments 2D images and Z stacks: take one time point or channel first"
        )
    axes = "ZYX"[-spatial:] + ("C" if layer.rgb else "")
    return data, axes


def is_stack(layer: Image | Labels) -> bool:
    """Tell whether the layer has a Z axis."""
    return layer.ndim == 3


def current_slice(viewer: napari.Viewer, layer: Image | Labels) -> int:
    """Index of the Z slice of ``layer`` shown in the viewer (0 for a 2D layer)."""
    if not is_stack(layer):
        return 0
    point = viewer.dims.point[-layer.ndim :]
    z = round(float(layer.world_to_data(point)[0]))
    return int(min(max(z, 0), layer.data.shape[0] - 1))


def record_of(layer: Layer | None) -> PredictionRecord | None:
    """Return the prediction record the plugin attached to ``layer``, if any."""
    if layer is None:
        return None
    record = layer.metadata.get(RECORD_KEY)
    return record if isinstance(record, PredictionRecord) else None


def layer_choices(
    viewer: napari.Viewer, kind: type[L], *, plugin_only: bool = False
) -> list[tuple[str, L]]:
    """Return (name, layer) for the viewer's layers of type ``kind``.

    With ``plugin_only``, only layers that carry the plugin's :class:`PredictionRecord`. The
    plugin's uncertainty maps are not offered as images.
    """
    return [
        (layer.name, layer)
        for layer in viewer.layers
        if isinstance(layer, kind)
        and (not plugin_only or record_of(layer) is not None)
        and UNCERTAINTY_KEY not in layer.metadata
    ]


def layer_is_edited(layer: Labels) -> bool:
    """Tell whether a person changed ``layer`` since the plugin wrote it (or it is not ours)."""
    record = record_of(layer)
    return record is None or is_edited(record.prediction, np.asarray(layer.data))


def has_corrections(layer: Labels) -> bool:
    """Tell whether a person changed pixels of a Labels layer that Segment or the CRF wrote."""
    record = record_of(layer)
    if record is None or record.prediction.shape != layer.data.shape:
        return False
    return is_edited(record.prediction, np.asarray(layer.data))


def unique_name(viewer: napari.Viewer, name: str) -> str:
    """``name``, or ``name (2)``, ``name (3)``, ... when the viewer has a layer of that name."""
    taken = {layer.name for layer in viewer.layers}
    if name not in taken:
        return name
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"


def write_labels(
    viewer: napari.Viewer,
    name: str,
    labels: np.ndarray,
    record: PredictionRecord,
    like: Image | Labels,
    z: int | None = None,
) -> Labels:
    """Show ``labels`` in the Labels layer ``name``, never discarding a person's edits.

    Parameters
    ----------
    viewer
        The viewer.
    name
        Layer to write, e.g. ``"cells labels"``. It is reused when it holds exactly what the
        plugin wrote last; when a person has edited it, a new layer ``"name (2)"`` is added.
    labels
        The full labels, or one (Y, X) slice when ``z`` is given.
    record
        The record of the full labels (for ``z``: of the new slice; merged into an existing one).
    like
        Layer whose scale and translation the new layer copies.
    z
        Write only this slice of a stack.
    """
    existing = viewer.layers[name] if name in viewer.layers else None
    reusable = (
        isinstance(existing, Labels)
        and record_of(existing) is not None
        and not layer_is_edited(existing)
        and existing.data.shape == record.prediction.shape
    )
    if reusable:
        assert isinstance(existing, Labels)
        old = record_of(existing)
        if z is not None and old is not None and old.probabilities is not None:
            existing.data[z] = labels
            old.update_slice(z, labels, _slice_probs(record, z))
            existing.refresh()
        else:
            existing.data = labels if z is None else record.prediction.copy()
            existing.metadata[RECORD_KEY] = record
        existing.visible = True
        return existing
    if existing is not None:
        new_name = unique_name(viewer, name)
        show_info(
            f"'{name}' holds edits (or is not the plugin's), so it was kept as it is; "
            f"the new result is in '{new_name}'"
        )
        name = new_name
    data = labels if z is None else record.prediction.copy()
    layer = viewer.add_labels(
        data,
        name=name,
        scale=like.scale[-data.ndim :],
        translate=like.translate[-data.ndim :],
        metadata={RECORD_KEY: record},
        opacity=LABELS_OPACITY,
    )
    style_class_labels(layer, record.class_names)
    return layer


#: Colours of classes 1, 2, ... (0 is transparent): bright hues that stand out on the red,
#: magenta and grey stains of fluorescence slices, where napari's default label 1 (a dark
#: brown) looked like a dimmed image.
CLASS_COLOURS = ("#00e5ff", "#ffe600", "#39ff14", "#ff6ec7", "#ffffff", "#1e90ff", "#ff8c00")
LABELS_OPACITY = 0.5
#: Outline colours of objects 1, 2, ... (cycled): bright, and none of them red or magenta, so
#: that on the stains of egg-chamber slices each chamber's outline is seen and neighbours,
#: numbered one after the other along a chain of chambers, differ. napari's random label
#: colours drew some outlines dark blue or purple, invisible on a red chamber.
OBJECT_COLOURS = (
    "#00e5ff", "#ffe600", "#39ff14", "#ffffff", "#ff8c00", "#7fffd4", "#adff2f", "#87cefa",
)  # fmt: skip
#: Outline width in image pixels: outlines of 1-2 px vanish on a slice shown zoomed out.
OBJECT_CONTOUR = 3


def style_class_labels(layer: Labels, class_names: Sequence[str]) -> None:
    """Give a semantic Labels layer contrasting class colours and a ``class`` feature per value.

    Hovering over the layer then shows the class name beside the value. Classes beyond the
    palette keep napari's colours.
    """
    names = list(class_names)
    if len(names) - 1 <= len(CLASS_COLOURS):
        colours: dict[int | None, Any] = {None: (0.0, 0.0, 0.0, 0.0), 0: (0.0, 0.0, 0.0, 0.0)}
        colours.update({k: CLASS_COLOURS[k - 1] for k in range(1, len(names))})
        layer.colormap = DirectLabelColormap(color_dict=colours)
    if names:
        layer.features = pd.DataFrame({"index": np.arange(len(names)), "class": names})


def write_uncertainty(
    viewer: napari.Viewer,
    name: str,
    uncertainty: np.ndarray,
    like: Image | Labels,
    z: int | None = None,
    depth: int | None = None,
) -> Image:
    """Show a per-pixel uncertainty map (0-1) as the Image layer ``name`` above the labels.

    With ``z``, ``uncertainty`` is one (Y, X) slice of a stack of ``depth`` slices: it goes into
    that slice of the layer (created with zeros elsewhere). The map is drawn in "magma" over
    the image and labels (additive blending), so bright means unsure.
    """
    if z is None:
        data = np.asarray(uncertainty, dtype=np.float32)
    else:
        shape = (int(depth or 0), *uncertainty.shape)
        existing = viewer.layers[name] if name in viewer.layers else None
        if isinstance(existing, Image) and existing.data.shape == shape:
            existing.data[z] = uncertainty
            existing.refresh()
            existing.visible = True
            return existing
        data = np.zeros(shape, dtype=np.float32)
        data[z] = uncertainty
    if name in viewer.layers and isinstance(viewer.layers[name], Image):
        layer = viewer.layers[name]
        assert isinstance(layer, Image)
        layer.data = data
        layer.visible = True
        return layer
    return viewer.add_image(
        data,
        name=unique_name(viewer, name) if name in viewer.layers else name,
        scale=like.scale[-data.ndim :],
        translate=like.translate[-data.ndim :],
        colormap="magma",
        contrast_limits=(0.0, 1.0),
        blending="additive",
        opacity=0.7,
        metadata={UNCERTAINTY_KEY: like.name},
    )


def write_objects(
    viewer: napari.Viewer,
    name: str,
    objects: np.ndarray,
    table: dict[str, np.ndarray],
    like: Image | Labels,
    z: int | None = None,
    depth: int | None = None,
) -> Labels:
    """Show one label per object as the Labels layer ``name``, its measurements as features.

    With ``z``, ``objects`` is one slice of a stack of ``depth`` slices (the layer holds that
    slice only). Each object is outlined in one of :data:`OBJECT_COLOURS`, neighbours in
    different ones; hovering shows its row of ``table`` (area, centroid, axes, orientation,
    eccentricity, border, mean intensity).
    """
    data = np.asarray(objects)
    if z is not None:
        full = np.zeros((int(depth or 0), *data.shape), dtype=data.dtype)
        full[z] = data
        data = full
    features = pd.DataFrame({"index": np.asarray(table["label"]), **table})
    existing = viewer.layers[name] if name in viewer.layers else None
    if isinstance(existing, Labels) and existing.metadata.get(OBJECTS_KEY) == _digest(
        np.asarray(existing.data)
    ):  # ours and unedited: reuse it
        existing.data = data
        existing.features = features
        existing.metadata[OBJECTS_KEY] = _digest(data)
        existing.visible = True
        return existing
    layer = viewer.add_labels(
        data,
        name=unique_name(viewer, name) if existing is not None else name,
        scale=like.scale[-data.ndim :],
        translate=like.translate[-data.ndim :],
        opacity=1.0,  # outlines only: the image stays visible inside each chamber
        features=features,
        metadata={OBJECTS_KEY: _digest(data)},
    )
    layer.colormap = object_colormap()
    layer.contour = OBJECT_CONTOUR
    return layer


def object_colormap() -> CyclicLabelColormap:
    """Return the objects' colour map: :data:`OBJECT_COLOURS` in turn, 0 transparent."""
    return CyclicLabelColormap(colors=["transparent", *OBJECT_COLOURS])


def _digest(data: np.ndarray) -> str:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16).hexdigest()


def _slice_probs(record: PredictionRecord, z: int) -> np.ndarray | None:
    return None if record.probabilities is None else record.probabilities[:, z]


def layer_samples(viewer: napari.Viewer, layer: Labels) -> list[tuple[int, TrainingSample]]:
    """(slice index, sample) for every slice of ``layer`` that a person changed or checked."""
    record = record_of(layer)
    if record is None:
        raise InputError(f"'{layer.name}' was not made by Segment, so its edits are unknown")
    if record.image_name not in viewer.layers:
        raise InputError(
            f"the image '{record.image_name}' of '{layer.name}' is no longer open; open it "
            "again under that name"
        )
    data, axes = image_data(viewer.layers[record.image_name])
    stack = to_zyxc(data, infer_layout(tuple(data.shape), axes))
    return [
        (
            s.index,
            TrainingSample(
                np.asarray(stack[s.index]),
                s.labels,
                s.corrected,
                name=f"{record.image_name} slice {s.index}",
            ),
        )
        for s in annotated_slices(record, np.asarray(layer.data))
    ]
