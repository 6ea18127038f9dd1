"""napari sample data: synthetic egg chambers, generated on the fly from fixed seeds.

The functions return napari ``LayerData`` tuples, so this module needs neither napari nor Qt;
the manifest (``napari.yaml``) names them under ``contributions.sample_data``.
``scripts/make_sample_data.py`` writes the same images, with their labels, to ``sample_data/``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .training.synthetic import make_egg_chamber_slice, make_egg_chamber_stack

__all__ = [
    "SLICE_PARAMS",
    "STACK_PARAMS",
    "egg_chamber_slice",
    "egg_chamber_stack",
    "sample_slice_image",
]

#: Arguments of :func:`make_egg_chamber_slice` for the sample slice (a fixed seed).
SLICE_PARAMS: dict[str, Any] = {"shape": (512, 768), "rng": 3, "scale": 0.75}
#: Arguments of :func:`make_egg_chamber_stack` for the sample stack; z-spacing in pixels.
STACK_PARAMS: dict[str, Any] = {"shape": (8, 256, 256), "rng": 11, "scale": 0.6, "z_spacing": 4.0}

LayerData = tuple[Any, dict[str, Any], str]


def sample_slice_image() -> np.ndarray:
    """Return the synthetic sample slice itself, a (Y, X, 3) RGB array."""
    image, _ = make_egg_chamber_slice(**SLICE_PARAMS)
    return np.asarray(image)


def egg_chamber_slice() -> list[LayerData]:
    """Return one synthetic 512 x 768 RGB confocal-like slice of egg-chamber chains.

    Returns
    -------
    list of tuple
        One napari image-layer tuple ``(data, metadata, "image")``.
    """
    image, _ = make_egg_chamber_slice(**SLICE_PARAMS)
    return [(image, {"name": "egg chambers (synthetic)", "rgb": True}, "image")]


def egg_chamber_stack() -> list[LayerData]:
    """Return a synthetic 8 x 256 x 256 RGB z-stack through egg chambers.

    Returns
    -------
    list of tuple
        One napari image-layer tuple; its ``scale`` carries the z-spacing.
    """
    image, _ = make_egg_chamber_stack(**STACK_PARAMS)
    meta = {
        "name": "egg chamber stack (synthetic)",
        "rgb": True,
        "scale": (STACK_PARAMS["z_spacing"], 1.0, 1.0),
    }
    return [(image, meta, "image")]
