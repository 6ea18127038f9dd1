"""npe2 reader: open an annotated set folder for review (image, labels and corrected mask).

A set folder (``dataset.json``, or a plain ``images/`` + ``labels/`` pair) opens as three
layers per item: the image, its labels in the plugin's class colours (hover shows the class;
pixels never annotated are transparent) and, when the item has one, the mask of the pixels a
person corrected, as a light tint. Only the first item is visible; the others are in the layer
list, to be shown one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_annotated_set` when ``path`` is a set folder, else ``None``."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    folder = Path(path)
    if not folder.is_dir():
        return None
    from .training.dataset import MANIFEST

    plain = (folder / "images").is_dir() and (folder / "labels").is_dir()
    return read_annotated_set if (folder / MANIFEST).is_file() or plain else None


def read_annotated_set(path: str | list[str]) -> list[LayerData]:
    """Layers of every item of the set at ``path`` (see the module docstring)."""
    from napari.utils.colormaps import DirectLabelColormap

    from ._qt.layers import CLASS_COLOURS, LABELS_OPACITY
    from .training.dataset import AnnotatedSet
    from .training.samples import IGNORE_LABEL

    folder = Path(path[0] if isinstance(path, list) else path)
    annotated = AnnotatedSet.open(folder)
    names = annotated.class_names
    clear = (0.0, 0.0, 0.0, 0.0)
    colours: dict[int | None, Any] = {None: clear, 0: clear}
    colours.update({k: CLASS_COLOURS[(k - 1) % len(CLASS_COLOURS)] for k in range(1, len(names))})
    colours[IGNORE_LABEL] = clear
    values = [*range(len(names)), IGNORE_LABEL]
    features = {"index": values, "class": [*names, "not annotated"]}
    layers: list[LayerData] = []
    for i, item in enumerate(annotated.items):
        sample = annotated.load_sample(item.name)
        visible = i == 0
        rgb = sample.image.ndim == 3 and sample.image.shape[-1] in (3, 4)
        layers.append((sample.image, {"name": item.name, "rgb": rgb, "visible": visible}, "image"))
        labels_kwargs = {
            "name": f"{item.name} labels",
            "colormap": DirectLabelColormap(color_dict=colours),
            "opacity": LABELS_OPACITY,
            "features": features,
            "visible": visible,
            "metadata": {"fcnseg_set_item": item.name, "split": item.split},
        }
        layers.append((np.asarray(sample.labels), labels_kwargs, "labels"))
        if sample.corrected is not None:
            corrected_kwargs = {
                "name": f"{item.name} corrected",
                "colormap": DirectLabelColormap(color_dict={None: clear, 0: clear, 1: "#ff00ff"}),
                "opacity": 0.35,  # a tint: the labels beneath stay readable
                "visible": visible,
            }
            layers.append((sample.corrected.astype(np.uint8), corrected_kwargs, "labels"))
    return layers
