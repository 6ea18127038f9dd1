"""Writing labels as OME-Zarr (NGFF 0.4), slice by slice and atomically.

``NAME.ome.zarr`` is a standalone label image, laid out as an NGFF *image* whose group also
carries the ``image-label`` metadata of the NGFF labels specification::

    NAME.ome.zarr/
      .zgroup
      .zattrs      multiscales (axes z, y, x; one scale per level),
                   image-label (colour and class name of every label value),
                   fcnseg (class names, in order)
      0/           full resolution, uint8/uint16, one chunk per slice (up to 1024x1024 px)
      1/ 2/ ...    every second pixel of the level above, until a slice fits 512x512

Any NGFF reader opens it as an image; label-aware ones (napari-ome-zarr, ome-zarr-py) as
labels with the class names as properties. Zarr format 2 with ``/`` chunk keys and Blosc-zstd,
as NGFF 0.4 asks, is read by the widest range of tools (Fiji/BigDataViewer, QuPath, vizarr,
napari).

The store is written in a hidden temporary folder beside the destination and renamed into place
only when every slice is written, so a crash or Ctrl-C never leaves a partial ``NAME.ome.zarr``.
Slices may be written from other processes (Dask workers) with :func:`write_labels_slice`:
each slice is its own chunk, so writers never share one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, OutputExistsError
from .atomic import check_writable
from .ngff import ome_attributes, read_class_names, read_multiscale

if TYPE_CHECKING:
    import zarr

NGFF_VERSION = "0.4"
#: Largest chunk side in Y and X.
CHUNK_SIDE = 1024
#: Downsampled levels are added until a slice fits in this many pixels a side.
SMALLEST_LEVEL_SIDE = 512
#: RGBA colours of the label values 1, 2, ... (0, the background, is transparent).
PALETTE = (
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 0),
    (255, 128, 0),
    (0, 128, 255),
    (128, 255, 0),
    (255, 0, 128),
    (128, 0, 255),
)


def is_ome_zarr_name(path: str | os.PathLike[str]) -> bool:
    """Tell whether ``path`` names a zarr output (``.ome.zarr`` or ``.zarr``)."""
    return str(path).lower().rstrip("/").endswith(".zarr")


def level_shapes(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Shapes of the pyramid levels of labels shaped (Y, X) or (Z, Y, X)."""
    shapes = [tuple(int(s) for s in shape)]
    while max(shapes[-1][-2:]) > SMALLEST_LEVEL_SIDE:
        *lead, y, x = shapes[-1]
        shapes.append((*lead, -(-y // 2), -(-x // 2)))
    return shapes


class OmeZarrLabelsWriter:
    """A new OME-Zarr label image, filled slice by slice, moved into place by :meth:`commit`.

    Use it as a context manager: leaving the block normally commits, an exception removes the
    temporary folder and leaves the destination untouched.

    Parameters
    ----------
    path
        Destination, e.g. ``stack_labels.ome.zarr``.
    shape
        (Y, X) or (Z, Y, X).
    dtype
        Integer type of the labels (see :func:`~.labels.labels_dtype`).
    class_names
        Name of every label value, background (0) first.
    spacing
        Physical pixel size (z, y, x) or (y, x), written as the level-0 scale.
    overwrite
        Replace an existing destination at commit time.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        shape: Sequence[int],
        dtype: np.dtype | type,
        *,
        class_names: Sequence[str],
        spacing: Sequence[float] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = check_writable(path, overwrite)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.overwrite = overwrite
        if len(self.shape) not in (2, 3) or self.dtype.kind not in "ui":
            raise InputError(
                f"OME-Zarr labels must be 2D or 3D integers; got shape {self.shape} {self.dtype}"
            )
        if spacing is not None and len(spacing) == 3 and len(self.shape) == 2:
            spacing = tuple(spacing)[1:]
        if spacing is not None and len(spacing) != len(self.shape):
            raise InputError(f"spacing {tuple(spacing)} does not fit labels shaped {self.shape}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = Path(
            tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        )
        try:
            _create_store(
                self.tmp_path, self.path.name, self.shape, self.dtype, list(class_names), spacing
            )
        except BaseException:
            self.abort()
            raise

    def write_slice(self, z: int, labels: np.ndarray) -> None:
        """Write the labels of slice ``z`` (use 0 for a 2D image) at every level."""
        write_labels_slice(self.tmp_path, z, labels)

    def commit(self) -> Path:
        """Move the finished store to its destination and return the destination."""
        _move_dir_into_place(self.tmp_path, self.path, self.overwrite)
        return self.path

    def abort(self) -> None:
        """Remove the temporary folder."""
        shutil.rmtree(self.tmp_path, ignore_errors=True)

    def __enter__(self) -> OmeZarrLabelsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


def write_labels_slice(store: str | os.PathLike[str], z: int, labels: np.ndarray) -> None:
    """Write slice ``z`` of a store made by :class:`OmeZarrLabelsWriter` (from any process)."""
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    try:
        names = read_multiscale(ome_attributes(group)).paths
    except ValueError as exc:
        raise InputError(f"{store}: not a label store made by this plugin ({exc})") from None
    labels = np.asarray(labels)
    for level, name in enumerate(names):
        array = group[name]
        if not isinstance(array, zarr.Array):
            raise InputError(f"{store}: level {name!r} is a group, not an array")
        step = 2**level
        part = labels[::step, ::step]
        if part.shape != tuple(array.shape[-2:]):
            raise InputError(
                f"labels slice shaped {labels.shape}; the store expects {tuple(array.shape[-2:])}"
            )
        if array.ndim == 3:
            array[z] = part.astype(array.dtype, copy=False)
        else:
            array[...] = part.astype(array.dtype, copy=False)


def write_ome_zarr_labels(
    path: str | os.PathLike[str],
    pages: Iterable[np.ndarray],
    *,
    shape: Sequence[int],
    dtype: np.dtype | type,
    class_names: Sequence[str],
    spacing: Sequence[float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write labels page by page as they are produced (the OME-Zarr twin of ``write_label_pages``).

    ``pages`` yields one (Y, X) array per Z slice, in order (one page for a 2D image).
    """
    count = shape[0] if len(shape) == 3 else 1
    with OmeZarrLabelsWriter(
        path, shape, dtype, class_names=class_names, spacing=spacing, overwrite=overwrite
    ) as writer:
        written = 0
        for z, page in enumerate(pages):
            writer.write_slice(z, page)
            written += 1
        if written != count:
            raise InputError(f"{path}: got {written} label slice(s), expected {count}")
    return Path(path)


def read_ome_zarr_labels(path: str | os.PathLike[str]) -> tuple[zarr.Array, list[str]]:
    """Open labels written by this module: (full-resolution zarr array, class names).

    Raises
    ------
    InputError
        If ``path`` is not an OME-Zarr label image.
    """
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = ome_attributes(group)
        level = read_multiscale(attrs).paths[0]
        array = group[level]
        if not isinstance(array, zarr.Array):
            raise ValueError(f"level {level!r} is a group, not an array")
        names = read_class_names(attrs)
    except Exception as exc:
        raise InputError(f"{path}: not an OME-Zarr label image ({exc})") from None
    return array, names


# ------------------------------------------------------------------------------------ helpers
def _create_store(
    root: Path,
    name: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    class_names: list[str],
    spacing: Sequence[float] | None,
) -> None:
    import zarr
    from numcodecs import Blosc

    group = zarr.open_group(str(root), mode="w", zarr_format=2)
    axes = ["z", "y", "x"][-len(shape) :]
    base = [float(s) for s in spacing] if spacing is not None else [1.0] * len(shape)
    datasets: list[dict[str, Any]] = []
    for level, level_shape in enumerate(level_shapes(shape)):
        chunks = (*(1,) * (len(shape) - 2), *(min(s, CHUNK_SIDE) for s in level_shape[-2:]))
        group.create_array(
            str(level),
            shape=level_shape,
            chunks=chunks,
            dtype=dtype,
            compressor=Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE),
            fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        factor = [1.0] * (len(shape) - 2) + [2.0**level] * 2
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [b * f for b, f in zip(base, factor)]}
                ],
            }
        )
    group.attrs.update(
        {
            "multiscales": [
                {
                    "version": NGFF_VERSION,
                    "name": name,
                    "axes": [{"name": a, "type": "space"} for a in axes],
                    "datasets": datasets,
                    "type": "nearest",
                    "metadata": {"description": "every second pixel of the level above"},
                }
            ],
            "image-label": {
                "version": NGFF_VERSION,
                "colors": [
                    {"label-value": i, "rgba": [0, 0, 0, 0] if i == 0 else [*_colour(i), 255]}
                    for i in range(len(class_names))
                ],
                "properties": [
                    {"label-value": i, "class": name} for i, name in enumerate(class_names)
                ],
            },
            "fcnseg": {"class_names": class_names},
        }
    )


def _colour(value: int) -> tuple[int, int, int]:
    return PALETTE[(value - 1) % len(PALETTE)]


def _move_dir_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if path.exists() or path.is_symlink():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputExistsError(
                f"{path} appeared while it was being written; nothing was overwritten. Allow "
                "overwriting to replace it (fcnseg's --overwrite, overwrite=True in Python)."
            )
        trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        old = trash / path.name
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)
            raise
        shutil.rmtree(trash, ignore_errors=True)
        return
    try:
        # rename() onto a non-empty folder or a file fails: no output is ever clobbered.
        os.rename(tmp, path)
    except OSError as exc:
        raise OutputExistsError(
            f"{path} appeared while it was being written ({exc.strerror}); nothing was "
            "overwritten. Allow overwriting to replace it (fcnseg's --overwrite, "
            "overwrite=True in Python)."
        ) from None
