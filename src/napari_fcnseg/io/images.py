"""Reading images: TIFF with tifffile (axes from ImageJ/OME metadata), PNG/JPEG with skimage.

Nothing is decoded before the size the file declares is checked: the TIFF's first series, or
the PNG/JPEG header (:mod:`.headers`), must hold at most :data:`MAX_DECODED_BYTES`, so a small
hostile or corrupt file cannot make the reader allocate terabytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .axes import Layout, infer_layout
from .calibration import tiff_spacing
from .headers import declared_size

TIFF_SUFFIXES = (".tif", ".tiff")
PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PLAIN_SUFFIXES

#: Refuse to read files whose decoded size exceeds this many bytes (a corrupt or hostile header
#: can declare terabytes); large stacks are read page by page through a memory map instead.
MAX_DECODED_BYTES = 16 * 2**30


@dataclass
class ImageData:
    """An image read from disk, with the layout of its axes.

    Attributes
    ----------
    data
        The pixels (a memory-mapped array for large uncompressed TIFFs).
    layout
        Which axis is which.
    path
        Where it was read from.
    spacing
        Physical (z, y, x) voxel size when the file says so, else ``None``.
    unit
        The unit of ``spacing`` when the file names it (e.g. ``"micron"``).
    """

    data: np.ndarray
    layout: Layout
    path: Path
    spacing: tuple[float, float, float] | None = None
    unit: str | None = None


def read_image(
    path: str | os.PathLike[str], *, axes: str | None = None, channels: int | None = None
) -> ImageData:
    """Read a TIFF, PNG or JPEG image.

    Parameters
    ----------
    path
        The file.
    axes
        Override the axes (letters from ``ZYXC``); by default they come from the file's
        ImageJ/OME metadata, or are inferred from the shape.
    channels
        Channels the model expects, used to break ties when inferring axes.

    Raises
    ------
    InputError
        If the file is missing, not an image this plugin reads, corrupt, or its axes unclear.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _read_tiff(path, axes, channels)
    if suffix in PLAIN_SUFFIXES:
        return _read_plain(path, axes, channels)
    raise InputError(
        f"{path}: unsupported file type {suffix!r}; use TIFF, PNG or JPEG "
        "(convert other formats in napari or Fiji first)"
    )


def layout_of(path: Path, shape: tuple[int, ...], axes: str | None, channels: int | None) -> Layout:
    """Infer the layout of the image read from ``path``; errors name the file."""
    try:
        return infer_layout(shape, axes, channels)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def check_declared_bytes(path: Path, shape: tuple[int, ...], nbytes: int, advice: str) -> None:
    """Refuse a file whose pixels would take more than :data:`MAX_DECODED_BYTES` decoded."""
    if nbytes > MAX_DECODED_BYTES:
        raise InputError(
            f"{path}: declares {nbytes / 2**30:.1f} GiB of pixels (shape {shape}); that is more "
            f"than napari-fcnseg reads at once ({MAX_DECODED_BYTES / 2**30:.0f} GiB): {advice}"
        )


def check_pixels(data: np.ndarray, source: str) -> None:
    """Refuse arrays no segmentation can use: empty, wrong dtype, NaN or infinite values."""
    if data.size == 0 or 0 in data.shape:
        raise InputError(f"{source}: the image is empty (shape {data.shape})")
    if data.dtype.kind not in "uif":
        raise InputError(
            f"{source}: pixel type {data.dtype} is not supported; use integer or float images"
        )
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise InputError(
            f"{source}: the image contains NaN or infinite values; replace them (e.g. with 0) "
            "before segmenting"
        )


def _read_tiff(path: Path, axes: str | None, channels: int | None) -> ImageData:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            meta_axes = series.axes
            spacing, unit = _tiff_calibration(tif)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            check_declared_bytes(path, shape, nbytes, "crop it or split the stack")
            memmappable = series.dataoffset is not None and nbytes > 256 * 2**20
            data = tifffile.memmap(path, mode="r") if memmappable else series.asarray()
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise InputError(
            f"{path}: not a readable TIFF (truncated or corrupt?): {exc}; re-export the image"
        ) from None
    if axes is None and meta_axes and not set(meta_axes.upper()) & set("QI"):
        axes = meta_axes
    layout = layout_of(path, tuple(data.shape), axes, channels)
    if not memmappable:  # memory-mapped stacks are checked slice by slice during inference
        check_pixels(data, str(path))
    return ImageData(data, layout, path, spacing, unit)


def _tiff_calibration(tif: object) -> tuple[tuple[float, float, float] | None, str | None]:
    found = tiff_spacing(tif)
    return (None, None) if found is None else found


def _read_plain(path: Path, axes: str | None, channels: int | None) -> ImageData:
    from PIL import Image
    from skimage import io as skio

    declared = declared_size(path)
    if declared is not None:
        check_declared_bytes(
            path,
            declared.shape,
            declared.nbytes,
            "crop it, or save it as a TIFF, which fcnseg predict reads page by page",
        )
    try:
        data = np.asarray(skio.imread(path))
    except Image.DecompressionBombError:
        size = f" ({declared.height}x{declared.width})" if declared is not None else ""
        raise InputError(
            f"{path}: declares more pixels{size} than Pillow decodes safely (its limit is "
            f"{2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels); save it as a TIFF, which "
            "napari-fcnseg reads page by page, or crop it"
        ) from None
    except Exception as exc:
        raise InputError(
            f"{path}: cannot decode this image (truncated or corrupt?): {exc}; re-export it"
        ) from None
    if data.ndim == 3 and data.shape[-1] == 4 and axes is None:
        data = data[..., :3]  # the alpha channel of a PNG is not image data
    if data.ndim == 3 and data.shape[-1] == 2 and axes is None:
        data = data[..., :1]  # grey + alpha
    layout = layout_of(path, tuple(data.shape), axes, channels)
    check_pixels(data, str(path))
    return ImageData(data, layout, path)
