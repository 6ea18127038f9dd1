"""OME-Zarr (NGFF) metadata, read and checked into plain Python values.

zarr 3 types a group's attributes as JSON (a union of strings, numbers, booleans, lists and
mappings), which cannot be indexed before it is narrowed. The functions here check the parts of
the metadata this package uses once, and hand them back as plain dicts, lists and strings.

They raise :class:`ValueError` with a short reason and no path: callers add the path and turn
it into an :class:`~..errors.InputError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import zarr


@dataclass(frozen=True)
class Multiscale:
    """The first image of an NGFF ``multiscales`` list.

    Attributes
    ----------
    axes
        Axis names in order (``["z", "y", "x"]``); empty when the metadata name none (NGFF 0.2
        and older).
    datasets
        One dict per level, full resolution first, each with a ``"path"`` string (and, from
        NGFF 0.4, ``"coordinateTransformations"``).
    """

    axes: list[str]
    datasets: list[dict[str, Any]]

    @property
    def paths(self) -> list[str]:
        """Path of every level inside the group, full resolution first."""
        return [str(d["path"]) for d in self.datasets]


def ome_attributes(group: zarr.Group) -> dict[str, Any]:
    """Return a group's attributes as a plain dict, unnested from NGFF 0.5's ``"ome"`` key."""
    attrs: dict[str, Any] = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests its metadata under "ome"
    if not isinstance(ome, dict):
        raise ValueError(f"its 'ome' attribute is a {type(ome).__name__}, not an object")
    return ome


def read_multiscale(attrs: Mapping[str, Any]) -> Multiscale:
    """Check and return the first entry of ``attrs["multiscales"]``.

    Raises
    ------
    ValueError
        If there is no ``multiscales`` list, or its first entry has no datasets with a path.
    """
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales:
        raise ValueError("no 'multiscales' list in its metadata")
    multiscale = multiscales[0]
    if not isinstance(multiscale, dict):
        raise ValueError("the first 'multiscales' entry is not an object")
    datasets = multiscale.get("datasets")
    if (
        not isinstance(datasets, list)
        or not datasets
        or not all(isinstance(d, dict) and isinstance(d.get("path"), str) for d in datasets)
    ):
        raise ValueError("'multiscales' has no 'datasets' list of objects with a 'path'")
    return Multiscale(_axis_names(multiscale.get("axes")), datasets)


def read_class_names(attrs: Mapping[str, Any]) -> list[str]:
    """Names of the label values, background first, from the ``fcnseg`` or ``image-label`` keys.

    ``fcnseg.class_names`` (written by this package) wins; otherwise the ``class`` of every
    ``image-label`` property, or its ``label-value`` as text. Empty when neither is present.
    """
    fcnseg = attrs.get("fcnseg", {})
    names = fcnseg.get("class_names") if isinstance(fcnseg, dict) else None
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("'fcnseg.class_names' is not a list of strings")
        return list(names)
    image_label = attrs.get("image-label", {})
    props = image_label.get("properties", []) if isinstance(image_label, dict) else []
    if not isinstance(props, list) or not all(
        isinstance(p, dict) and "label-value" in p for p in props
    ):
        raise ValueError("'image-label.properties' is not a list of objects with a 'label-value'")
    return [str(p.get("class", p["label-value"])) for p in props]


def _axis_names(axes: object) -> list[str]:
    if not axes:
        return []
    if not isinstance(axes, list):
        raise ValueError(f"'axes' is a {type(axes).__name__}, not a list")
    names = []
    for axis in axes:
        if isinstance(axis, dict):  # NGFF 0.4+: {"name": "z", "type": "space", ...}
            if not isinstance(axis.get("name"), str):
                raise ValueError(f"the axis {axis} has no 'name'")
            names.append(axis["name"])
        else:  # NGFF 0.3: plain names
            names.append(str(axis))
    return names
