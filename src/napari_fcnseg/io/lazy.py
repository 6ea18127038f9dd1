"""Images read lazily: zarr and OME-Zarr arrays, dask arrays, large TIFFs.

A lazy image is a :mod:`dask.array` whose chunks are read from disk only when a slice is
indexed and turned into numpy (``np.asarray(stack[z])``), so inference on a stack larger than
memory holds one slice at a time. :func:`open_image` picks the reader from the path:

* ``*.zarr`` folders: an OME-Zarr (NGFF) image, whose full-resolution level is used and whose
  axes and pixel sizes come from the ``multiscales`` metadata, or a plain zarr array;
* TIFFs larger than :data:`LAZY_TIFF_BYTES` (compressed or not, even larger than memory):
  tifffile's zarr store, one chunk per page or tile;
* smaller TIFFs, PNG and JPEG: read whole with :func:`~.images.read_image`.

:func:`full_resolution` and :func:`as_lazy_array` do the same for arrays already in memory,
e.g. the data of a napari layer (a list of levels for a multiscale layer).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .images import (
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    ImageData,
    _tiff_calibration,
    layout_of,
    read_image,
)
from .ngff import ome_attributes, read_multiscale

#: TIFFs whose pixels take more bytes than this are read lazily, page by page.
LAZY_TIFF_BYTES = 256 * 2**20

ZARR_SUFFIXES = (".zarr",)

_NGFF_AXES = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}


def is_zarr_path(path: str | os.PathLike[str]) -> bool:
    """Tell whether ``path`` is a folder holding a zarr array or group (v2 or v3)."""
    path = Path(path)
    if not path.is_dir():
        return False
    return any((path / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup"))


def image_stem(path: str | os.PathLike[str]) -> str:
    """File name without its image suffixes: ``a.ome.zarr`` -> ``a``, ``b.ome.tif`` -> ``b``."""
    name = Path(path).name
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def open_image(
    path: str | os.PathLike[str], *, axes: str | None = None, channels: int | None = None
) -> ImageData:
    """Open an image for inference, lazily when it is large or chunked on disk.

    Parameters
    ----------
    path
        A TIFF, PNG or JPEG file, or a zarr / OME-Zarr folder.
    axes
        Override the axes (letters from ``ZYXC``; ``T`` of length 1 is dropped).
    channels
        Channels the model expects, used to break ties when inferring axes.

    Returns
    -------
    ImageData
        ``data`` is a dask array for zarr folders and large TIFFs, else a numpy array.

    Raises
    ------
    InputError
        If the path is missing, not an image this plugin reads, or its axes are unclear.
    """
    path = Path(path)
    if path.is_dir():
        if not is_zarr_path(path):
            raise InputError(
                f"{path}: a folder that is not a zarr store; give image files or a .zarr / "
                ".ome.zarr folder"
            )
        return _open_zarr(path, axes, channels)
    if (
        path.suffix.lower() in TIFF_SUFFIXES
        and path.is_file()
        and _tiff_bytes(path) > LAZY_TIFF_BYTES
    ):
        return _open_tiff_lazily(path, axes, channels)
    return read_image(path, axes=axes, channels=channels)


def full_resolution(data: Any) -> Any:
    """Return the full-resolution array of layer data: level 0 of a multiscale, else ``data``.

    napari keeps a multiscale layer's data as a sequence of arrays, largest first
    (``MultiScaleData``, or the list given to ``add_image(..., multiscale=True)``); inference
    runs on the full-resolution level. Single arrays (numpy, dask, zarr) are returned as they are.

    Raises
    ------
    InputError
        If ``data`` is an empty sequence or its levels are not arrays.
    """
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        return data
    levels = list(data)
    if not levels or not all(hasattr(level, "shape") for level in levels):
        raise InputError(
            "a multiscale image needs at least one level and every level must be an array; "
            f"got {len(levels)} level(s) of types {sorted({type(v).__name__ for v in levels})}"
        )
    sizes = [int(np.prod(level.shape, dtype=np.int64)) for level in levels]
    if sizes[0] != max(sizes):
        raise InputError(
            f"multiscale levels are not ordered largest first (shapes "
            f"{[tuple(v.shape) for v in levels]}); give level 0 at full resolution first"
        )
    return levels[0]


def as_lazy_array(data: Any) -> Any:
    """Return ``data`` as an array that predict functions can index slice by slice.

    numpy and dask arrays are returned unchanged; zarr arrays (which cannot be transposed or
    broadcast) are wrapped in a dask array with the same chunks; a multiscale list gives its
    full-resolution level.
    """
    data = full_resolution(data)
    if isinstance(data, np.ndarray) or type(data).__module__.startswith("dask"):
        return data
    if type(data).__module__.startswith("zarr"):
        import dask.array as da

        return da.from_zarr(data)
    if hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__"):
        import dask.array as da

        return da.from_array(data, chunks=_slice_chunks(tuple(data.shape)))
    raise InputError(f"cannot segment data of type {type(data).__name__}; give an array")


# ------------------------------------------------------------------------------------ zarr
def _open_zarr(path: Path, axes: str | None, channels: int | None) -> ImageData:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path}: not a readable zarr store ({exc}); check the path") from None
    spacing = None
    meta_axes = None
    if isinstance(node, zarr.Group):
        try:
            attrs = ome_attributes(node)
        except ValueError as exc:
            raise InputError(f"{path}: unreadable OME-Zarr metadata: {exc}") from None
        if "multiscales" not in attrs:
            raise InputError(
                f"{path}: a zarr group without OME-Zarr 'multiscales' metadata; give the path "
                f"of the array inside it (e.g. {path}/0) or an OME-Zarr image"
            )
        if "image-label" in attrs:
            raise InputError(f"{path}: holds labels, not an image; open the image it labels")
        try:
            multiscale = read_multiscale(attrs)
        except ValueError as exc:
            raise InputError(f"{path}: unreadable OME-Zarr metadata: {exc}") from None
        dataset = multiscale.datasets[0]
        level = node.get(dataset["path"])
        if not isinstance(level, zarr.Array):
            raise InputError(
                f"{path}: the OME-Zarr full-resolution level {dataset['path']!r} is not an "
                "array in the group; the store is incomplete"
            )
        node = level
        meta_axes = _ngff_axes(multiscale.axes, path)
        spacing = _ngff_spacing(dataset, meta_axes)
    if axes is None:
        axes = meta_axes
    import dask.array as da

    data = da.from_zarr(node)
    layout = layout_of(path, tuple(data.shape), axes, channels)
    return ImageData(data, layout, path, spacing)


def _ngff_axes(names: list[str], path: Path) -> str | None:
    if not names:
        return None  # NGFF 0.2 and older: infer from the shape
    unknown = [n for n in names if n.lower() not in _NGFF_AXES]
    if unknown:
        raise InputError(f"{path}: unknown OME-Zarr axes {unknown}; expected t, c, z, y, x")
    return "".join(_NGFF_AXES[n.lower()] for n in names)


def _ngff_spacing(dataset: dict[str, Any], axes: str | None) -> tuple[float, float, float] | None:
    if axes is None:
        return None
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = dict(zip(axes, transform["scale"]))
            if "Z" in scale:
                return (float(scale["Z"]), float(scale["Y"]), float(scale["X"]))
    return None


# ------------------------------------------------------------------------------------ TIFF
def _tiff_bytes(path: Path) -> int:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return int(np.prod(series.shape, dtype=np.int64)) * np.dtype(series.dtype).itemsize
    except Exception:
        return 0  # read_image reports unreadable files with a clear message


def _open_tiff_lazily(path: Path, axes: str | None, channels: int | None) -> ImageData:
    import dask.array as da
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            meta_axes = tif.series[0].axes
            spacing, unit = _tiff_calibration(tif)
        store = tifffile.imread(path, aszarr=True, level=0)
        array = zarr.open(store, mode="r")
    except Exception as exc:  # tifffile raises many types for broken files
        raise InputError(
            f"{path}: not a readable TIFF (truncated or corrupt?): {exc}; re-export the image"
        ) from None
    if isinstance(array, zarr.Group):  # a pyramid: level 0 is the full resolution
        array = array["0"]
    if axes is None and meta_axes and not set(meta_axes.upper()) & set("QI"):
        axes = meta_axes
    data = da.from_zarr(array)
    layout = layout_of(path, tuple(data.shape), axes, channels)
    return ImageData(data, layout, path, spacing, unit)


def _slice_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    # One chunk per index of the first axis (a Z slice, or a channel for CYX): always correct,
    # and a slice is read in one piece for the usual ZYX / ZYXC stacks.
    return (1, *shape[1:]) if len(shape) > 2 else shape
