"""Which axis of an image is which.

Inside the core every image is handled as a stack shaped (Z, Y, X, C). This module turns the
layouts users have (YX, YXC, ZYX, ZYXC, CYX, ZCYX, ...) into that form and back, using the axes
named by file metadata when there are any and a small set of unambiguous rules otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

#: Largest axis that is taken for channels when no metadata says otherwise.
MAX_CHANNELS = 4
_KNOWN = set("ZYXC")


@dataclass(frozen=True)
class Layout:
    """How an array maps to (Z, Y, X, C).

    Attributes
    ----------
    axes
        One letter per axis of the original array, from ``ZYXC``.
    """

    axes: str

    @property
    def is_stack(self) -> bool:
        """True when the image has a Z axis."""
        return "Z" in self.axes

    @property
    def spatial_axes(self) -> str:
        """The spatial axes in output order: ``YX`` or ``ZYX``."""
        return "ZYX" if self.is_stack else "YX"

    def spatial_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the labels for an image of ``shape``."""
        return tuple(shape[self.axes.index(a)] for a in self.spatial_axes)


def normalize_axes_name(axes: str) -> str:
    """Map metadata axes (tifffile's ``S`` for samples, ``I``/``Q`` for unknown) to ours."""
    return axes.upper().replace("S", "C")


def infer_layout(
    shape: tuple[int, ...], axes: str | None = None, channels: int | None = None
) -> Layout:
    """Decide the layout of an array.

    Parameters
    ----------
    shape
        Shape of the array.
    axes
        Axes named by the user or by file metadata (letters from ``ZYXC``; ``S`` means channels;
        ``T``, ``Q`` or ``I`` of length 1 are dropped by :func:`to_zyxc`). ``None`` to infer.
    channels
        Channels the model expects, used to break ties.

    Raises
    ------
    InputError
        If the shape is empty, has too many dimensions, or is ambiguous without ``axes``.
    """
    ndim = len(shape)
    if ndim == 0 or any(s == 0 for s in shape):
        raise InputError(f"the image is empty (shape {tuple(shape)}); open a non-empty image")
    if axes is not None:
        axes = normalize_axes_name(axes)
        if len(axes) != ndim:
            raise InputError(
                f"axes {axes!r} has {len(axes)} letters but the image has {ndim} dimensions "
                f"(shape {tuple(shape)}); give one letter per dimension from Z, Y, X, C"
            )
        extra = [(a, s) for a, s in zip(axes, shape) if a not in _KNOWN and s > 1]
        if extra:
            named = ", ".join(f"{a} (length {s})" for a, s in extra)
            raise InputError(
                f"the image has axes {axes!r} (shape {tuple(shape)}); napari-fcnseg segments "
                f"2D images and Z stacks, not {named}: take one time point / position first"
            )
        kept = "".join(a for a in axes if a in _KNOWN)
        if len(set(kept)) != len(kept) or "Y" not in kept or "X" not in kept:
            raise InputError(
                f"axes {axes!r} must name Y and X once each, and at most one Z and one C"
            )
        return Layout(axes)

    small = MAX_CHANNELS if channels is None else max(MAX_CHANNELS, channels)
    if ndim == 2:
        return Layout("YX")
    if ndim == 3:
        return Layout("YXC" if shape[-1] <= small else "ZYX")
    if ndim == 4:
        if shape[-1] <= small:
            return Layout("ZYXC")
        if shape[1] <= small:
            return Layout("ZCYX")
    raise InputError(
        f"cannot tell the axes of an image shaped {tuple(shape)}: napari-fcnseg reads 2D images "
        "(YX, YXC) and stacks (ZYX, ZYXC); name its axes (e.g. ZCYX: fcnseg's --axes) or save "
        "the image with ImageJ/OME axes metadata"
    )


def to_zyxc(image: np.ndarray, layout: Layout) -> np.ndarray:
    """Return a (Z, Y, X, C) view of ``image`` (no copy when possible)."""
    axes = layout.axes
    drop = tuple(i for i, a in enumerate(axes) if a not in _KNOWN)
    if drop:
        image = (
            image.squeeze(axis=drop)
            if isinstance(image, np.ndarray)
            else image[tuple(0 if i in drop else slice(None) for i in range(len(axes)))]
        )
        axes = "".join(a for a in axes if a in _KNOWN)
    if "Z" not in axes:
        image, axes = image[None], "Z" + axes
    if "C" not in axes:
        image, axes = image[..., None], axes + "C"
    order = [axes.index(a) for a in "ZYXC"]
    if order != [0, 1, 2, 3]:
        image = (
            np.transpose(image, order) if isinstance(image, np.ndarray) else image.transpose(order)
        )
    return image
