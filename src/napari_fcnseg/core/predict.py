"""Tiled inference on 2D images and 3D stacks.

The image is processed slice by slice and, within a slice, in overlapping tiles sent to the
network in batches; tile predictions are blended with weights that ramp down over the overlap,
so there are no seams. Peak memory depends on the tile size and the batch, not on the number of
slices: :func:`predict_slices` hands each slice's probabilities to the caller as soon as it is
done.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..io.axes import Layout, infer_layout, to_zyxc
from ..io.images import check_pixels
from ..model.checkpoint import ModelInfo, SegmentationModel
from .device import resolve_device
from .normalize import normalization_bounds, normalize_slice
from .pipeline import in_background
from .progress import Progress
from .rescale import resize_channels, scaled_shape
from .tiling import TileGrid

log = logging.getLogger(__name__)

DEFAULT_TILE = 1024
DEFAULT_OVERLAP = 64
DEFAULT_BATCH = 4


@dataclass
class SlicePrediction:
    """Class probabilities of one Z slice, shaped (K, Y, X)."""

    index: int
    probabilities: np.ndarray


@dataclass(frozen=True)
class PreparedImage:
    """An image checked against a model and viewed as (Z, Y, X, C)."""

    stack: np.ndarray
    layout: Layout
    shape: tuple[int, ...]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the labels: (Y, X) or (Z, Y, X)."""
        return self.layout.spatial_shape(self.shape)


def prepare_image(
    image: np.ndarray, channels: int, axes: str | None = None, source: str = "image"
) -> PreparedImage:
    """Check an image for a model with ``channels`` input channels and view it as (Z, Y, X, C).

    A single-channel image given to a multichannel model is repeated over the channels.
    """
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    shape = tuple(int(s) for s in image.shape)
    layout = infer_layout(shape, axes, channels)
    if np.dtype(image.dtype).kind not in "uif":
        raise InputError(
            f"{source}: pixel type {image.dtype} is not supported; use integer or float images"
        )
    stack = to_zyxc(image, layout)
    c = stack.shape[-1]
    if c != channels:
        if c == 1:
            stack = np.broadcast_to(stack, (*stack.shape[:3], channels))
        else:
            raise InputError(
                f"{source} has {c} channels but the model expects {channels}; pick a model "
                f"trained on {c}-channel images, or give the image as {channels} channel(s)"
            )
    return PreparedImage(stack, layout, shape)


def predict_slices(
    model: SegmentationModel,
    image: np.ndarray,
    *,
    axes: str | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch: int = DEFAULT_BATCH,
    device: str | torch.device = "auto",
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    slices: Sequence[int] | None = None,
    source: str = "image",
    pipeline: bool | None = None,
) -> Generator[Progress | SlicePrediction, None, None]:
    """Predict class probabilities slice by slice.

    Yields :class:`Progress` after every batch of tiles and a :class:`SlicePrediction` when a
    slice is complete. Closing the generator stops the work before the next batch. A model with
    a working scale other than 1 (``model.info.scale``) sees each slice resized by it; the
    probabilities come back at the slice's own size (:mod:`.rescale`).

    Parameters
    ----------
    model
        The network, with its description (channels, normalisation).
    image
        YX, YXC, ZYX or ZYXC array (or any layout named by ``axes``), integer or float.
    axes
        Names of the image's axes when they cannot be inferred.
    tile
        Largest tile side in pixels (of the slice as the network sees it); a CUDA
        out-of-memory error halves it and carries on.
    overlap
        Pixels shared by neighbouring tiles, blended with ramped weights.
    batch
        Tiles per forward pass.
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    bounds
        Per-channel normalisation bounds ``(lo, hi)`` from :func:`~.normalize.normalization_bounds`
        on the whole stack; computed here when ``None``. Give them when the slices of one stack
        are predicted in several calls (e.g. on several workers) so that all use the same.
    slices
        Z indices to predict, in this order (default: every slice). Lazy stacks (dask, zarr)
        are read only at these slices.
    source
        What the image is (a file, a layer), to name it in error messages.
    pipeline
        Overlap the host's work with the device's: the network runs in a background thread
        that reads and normalises the next slice while the device computes, and the caller's
        work on a finished slice (labels, writing) runs beside the next slice's forward
        passes. ``None`` (default): on for CUDA and MPS, off on the CPU, where both sides
        compete for the same cores (``benchmarks/README.md``, "Tiled inference"). The
        events are the same either way, in the same order; at most
        :data:`PIPELINE_DEPTH` finished slices wait for the caller, so memory stays flat in
        the stack's length.
    """
    if tile < 1 or batch < 1 or overlap < 0:
        raise InputError(f"tile ({tile}) and batch ({batch}) must be >= 1 and overlap >= 0")
    prepared = prepare_image(image, model.info.in_channels, axes, source)
    stack = prepared.stack
    depth = stack.shape[0]
    order = list(range(depth)) if slices is None else [int(z) for z in slices]
    if any(not 0 <= z < depth for z in order):
        raise InputError(f"slices {order} are outside the stack's {depth} slice(s)")
    lo, hi = normalization_bounds(stack, model.info.normalization) if bounds is None else bounds
    dev = resolve_device(device)
    model = model.to(dev).eval()
    if pipeline is None:
        pipeline = dev.type != "cpu"
    events = _slice_events(
        model, prepared, order, lo, hi, tile, overlap, batch, dev, source, pipeline
    )
    if pipeline:
        yield from in_background(events, PIPELINE_DEPTH)
    else:
        yield from events


#: Events (progress and finished slices) a pipelined prediction computes ahead of its caller.
PIPELINE_DEPTH = 2


def _slice_events(
    model: SegmentationModel,
    prepared: PreparedImage,
    order: list[int],
    lo: np.ndarray,
    hi: np.ndarray,
    tile: int,
    overlap: int,
    batch: int,
    dev: torch.device,
    source: str,
    prefetch: bool,
) -> Generator[Progress | SlicePrediction, None, None]:
    """Predict slice after slice; with ``prefetch`` the next slice is read meanwhile."""
    stack = prepared.stack
    height, width = stack.shape[1:3]
    multiple = model.required_multiple
    # The network works at the model's scale: tiles are planned on the resized slice.
    net_h, net_w = scaled_shape((height, width), model.info.scale)
    grid = TileGrid.plan(net_h, net_w, tile, overlap, multiple)
    done = 0

    def where(z: int) -> str:
        return f"{source}, slice {z}" if prepared.layout.is_stack else source

    def prepare(z: int) -> tuple[np.ndarray, np.ndarray]:
        raw = np.asarray(stack[z])
        check_pixels(raw, where(z))
        return raw, resize_channels(normalize_slice(raw, lo, hi), (net_h, net_w))

    with ThreadPoolExecutor(1, thread_name_prefix="fcnseg-prefetch") as pool:
        ahead: Future[tuple[np.ndarray, np.ndarray]] | None = None
        for position, z in enumerate(order):
            raw, chw = ahead.result() if ahead is not None else prepare(z)
            ahead = None
            if prefetch and position + 1 < len(order):
                ahead = pool.submit(prepare, order[position + 1])
            while True:
                total = done + (len(order) - position) * len(grid)
                try:
                    probs = yield from _predict_slice(
                        model, raw.shape[:2], chw, grid, batch, dev, done, total
                    )
                    break
                except torch.OutOfMemoryError:
                    # Raised by CUDA (and MPS) allocators; the slice is redone with smaller tiles.
                    if max(grid.tile_h, grid.tile_w) <= 2 * multiple:
                        raise InputError(
                            f"out of {dev.type} memory even with {grid.tile_h}x{grid.tile_w} "
                            "px tiles; choose the device cpu, or close other programs that use "
                            "the GPU"
                        ) from None
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    tile = max(grid.tile_h, grid.tile_w) // 2
                    grid = TileGrid.plan(net_h, net_w, tile, overlap, multiple)
                    message = (
                        f"{dev.type} out of memory: tile size halved to {tile} px, carrying on"
                    )
                    log.warning(message)
                    yield Progress(done, done + (len(order) - position) * len(grid), message)
            done += len(grid)
            yield SlicePrediction(z, probs)


def _predict_slice(
    model: SegmentationModel,
    size: tuple[int, int],
    chw: np.ndarray,
    grid: TileGrid,
    batch: int,
    device: torch.device,
    done: int,
    total: int,
) -> Generator[Progress, None, np.ndarray]:
    """Probabilities of one normalised slice ``chw`` (at the network's scale), at ``size``."""
    pad_h, pad_w = grid.padded_shape()
    pad = ((0, 0), (0, pad_h - grid.height), (0, pad_w - grid.width))
    if pad_h > grid.height or pad_w > grid.width:
        chw = np.pad(chw, pad, mode="reflect" if min(grid.height, grid.width) > 1 else "edge")
    k = model.info.num_classes
    origins = grid.origins
    th, tw = grid.tile_h, grid.tile_w
    # Channels-last input makes the convolutions take oneDNN's / cuDNN's faster path (the model
    # itself is left as it is; benchmarks/README.md, "Tiled inference").
    layout = torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format
    # Tiles are blended on the device and the slice comes back in one transfer: on a GPU the
    # host then never waits for a batch, and stacks the next batch's tiles while it runs.
    with torch.inference_mode():
        accum = torch.zeros((k, pad_h, pad_w), dtype=torch.float32, device=device)
        weight_sum = torch.zeros((pad_h, pad_w), dtype=torch.float32, device=device)
    ramps: dict[tuple[bool, ...], torch.Tensor] = {}  # at most 9 kinds of tile (edges, corners)
    for start in range(0, len(origins), batch):
        chunk = origins[start : start + batch]
        tiles = np.stack([chw[:, y : y + th, x : x + tw] for y, x in chunk])
        with torch.inference_mode():
            logits = model(torch.from_numpy(tiles).to(device).contiguous(memory_format=layout))
            probs = torch.softmax(logits, dim=1).float()
            for (y, x), p in zip(chunk, probs, strict=True):
                kind = (y == 0, y == grid.ys[-1], x == 0, x == grid.xs[-1])
                if kind not in ramps:
                    ramps[kind] = torch.from_numpy(grid.weights(y, x)).to(device)
                w = ramps[kind]
                accum[:, y : y + th, x : x + tw].addcmul_(p, w)
                weight_sum[y : y + th, x : x + tw] += w
        step = done + start + len(chunk)
        yield Progress(step, total, f"{step}/{total} tiles")
    with torch.inference_mode():
        blended = accum[:, : grid.height, : grid.width] / weight_sum[: grid.height, : grid.width]
        result = blended.cpu().numpy()
    return resize_channels(result, size)


def predict_probabilities(
    model: SegmentationModel,
    image: np.ndarray,
    *,
    axes: str | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch: int = DEFAULT_BATCH,
    device: str | torch.device = "auto",
    out: np.ndarray | None = None,
    source: str = "image",
) -> Generator[Progress, None, np.ndarray]:
    """Predict class probabilities for a whole image or stack.

    A generator: it yields :class:`Progress` and returns probabilities shaped (K, Y, X) for a 2D
    image or (K, Z, Y, X) for a stack (float32, summing to 1 over K). Pass ``out`` (for example
    a memory-mapped or zarr array of that shape) to keep the result off the heap.
    See :func:`predict_slices` for the parameters.
    """
    prepared = prepare_image(image, model.info.in_channels, axes, source)
    spatial = prepared.spatial_shape
    k = model.info.num_classes
    if out is None:
        out = np.zeros((k, *spatial), dtype=np.float32)
    elif tuple(out.shape) != (k, *spatial):
        raise InputError(f"out has shape {tuple(out.shape)}, expected {(k, *spatial)}")
    for event in predict_slices(
        model,
        image,
        axes=axes,
        tile=tile,
        overlap=overlap,
        batch=batch,
        device=device,
        source=source,
    ):
        if isinstance(event, SlicePrediction):
            if prepared.layout.is_stack:
                out[:, event.index] = event.probabilities
            else:
                out[...] = event.probabilities
        else:
            yield event
    return out


def probabilities_to_labels(probabilities: np.ndarray, *, fill_holes: bool = False) -> np.ndarray:
    """Most probable class per pixel (0 = background), as uint8 or uint16.

    ``fill_holes``: give the holes of the foreground to the foreground, slice by slice
    (:func:`~.holes.fill_foreground_holes`). Whether a model's labels need it, its file says:
    :func:`model_labels`.
    """
    from ..io.labels import labels_dtype

    labels = np.argmax(probabilities, axis=0).astype(labels_dtype(probabilities.shape[0]))
    if fill_holes:
        from .holes import fill_foreground_holes

        labels = fill_foreground_holes(labels, probabilities)
    return labels


def model_labels(
    info: ModelInfo, probabilities: np.ndarray, *, fill_holes: bool | None = None
) -> np.ndarray:
    """Labels of ``probabilities`` as the model's file says: holes filled if its ``fill_holes``.

    ``fill_holes`` overrides the file when not ``None`` (the user's choice).
    """
    fill = info.fill_holes if fill_holes is None else fill_holes
    return probabilities_to_labels(probabilities, fill_holes=fill)
