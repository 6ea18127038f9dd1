"""Memory a prediction job needs, known before it starts, and the tile size that fits.

Inference holds one slice at a time (:func:`~.predict.predict_slices`), so the peak memory of a
job does not depend on the number of slices. It is the sum of

* the model's weights (and a copy of them on the device);
* per-slice buffers: the slice as read, its float32 normalised and padded copies, the blended
  probabilities and their weights, the labels, and the CRF's working arrays when it runs;
* per-batch buffers: the tiles of a batch and the network's activations, which grow with
  ``batch x tile_h x tile_w x (base_features, classes, channels)``.

The activation coefficients were fitted on the CPU to the U-Nets of this package (depth 3-4,
8-16 base features, tiles 256-1024, batches 1-4: peak RSS of one forward pass under
``torch.inference_mode``). Whole jobs measured by ``benchmarks/bench_scale.py`` and
``tests/core/test_memory.py`` came within 25% of the estimate (benchmarks/README.md, "Large
stacks"); the choice of a tile keeps a 25% margin (:data:`SAFETY_FRACTION`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from .rescale import scaled_shape
from .tiling import TileGrid

if TYPE_CHECKING:
    from ..model.checkpoint import SegmentationModel

log = logging.getLogger(__name__)

MiB = 2**20
#: Bytes per tile pixel held during a forward pass: ``4 * (A * base_features + B + ...)``.
_ACTIVATION_PER_FEATURE = 6.0
_ACTIVATION_CONSTANT = 56.0
#: Float32 arrays of (Y, X) per class held by one per-slice CRF run (logits, messages, Q, ...).
_CRF_ARRAYS_PER_CLASS = 25
#: Share of the available memory a job may plan to use.
SAFETY_FRACTION = 0.75
#: Tile sides tried by :func:`choose_tile`, largest first.
TILE_CANDIDATES = (1024, 768, 512, 384, 256, 192, 128, 96, 64, 32, 16)


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of a prediction job, in bytes, beyond what the process held before it.

    Attributes
    ----------
    model
        Weights (counted twice: the loaded copy and the one moved to the device).
    per_slice
        Buffers sized by one (Y, X) slice.
    per_batch
        Tiles of one batch and the network's activations.
    device_bytes
        The part that lives on the accelerator (0 on the CPU).
    tile, batch
        The tile side asked for and the batch the estimate is for (a batch larger than the
        tiles of a slice counts as that many tiles).
    """

    model: int
    per_slice: int
    per_batch: int
    device_bytes: int
    tile: int
    batch: int

    @property
    def host_bytes(self) -> int:
        """Bytes needed in main memory."""
        return self.model + self.per_slice + self.per_batch - self.device_bytes

    @property
    def total(self) -> int:
        """All bytes, host and device."""
        return self.model + self.per_slice + self.per_batch

    def describe(self) -> str:
        """One line for logs and error messages."""
        text = (
            f"tile {self.tile} px, batch {self.batch}: about {self.host_bytes / MiB:,.0f} MiB "
            f"of memory (slice buffers {self.per_slice / MiB:,.0f} MiB, network "
            f"{self.per_batch / MiB:,.0f} MiB, weights {self.model / MiB:,.0f} MiB)"
        )
        if self.device_bytes:
            text += f", {self.device_bytes / MiB:,.0f} MiB of it on the GPU"
        return text


@dataclass(frozen=True)
class NetworkSize:
    """What the estimate needs to know about a model."""

    in_channels: int
    num_classes: int
    base_features: int
    parameters: int
    multiple: int
    scale: float = 1.0

    @classmethod
    def of(cls, model: SegmentationModel) -> NetworkSize:
        """Read the sizes of a :class:`~..model.checkpoint.SegmentationModel`."""
        info = model.info
        arch = info.architecture
        params = sum(int(p.numel()) for p in model.parameters())
        return cls(
            in_channels=int(info.in_channels),
            num_classes=int(info.num_classes),
            base_features=int(arch.get("base_features", 16)),
            parameters=params,
            multiple=int(model.required_multiple),
            scale=float(info.scale),
        )


def estimate_memory(
    network: NetworkSize,
    slice_shape: tuple[int, int],
    *,
    tile: int,
    batch: int,
    overlap: int = 64,
    input_itemsize: int = 2,
    crf: bool = False,
    device: str = "cpu",
) -> MemoryEstimate:
    """Estimate the peak memory of predicting (and labelling) a stack of ``slice_shape`` slices.

    Parameters
    ----------
    network
        Sizes of the model.
    slice_shape
        (Y, X) of one slice; the number of slices does not matter.
    tile, batch, overlap
        As given to :func:`~.predict.predict_slices`.
    input_itemsize
        Bytes per pixel and channel of the image as stored (2 for uint16).
    crf
        Whether each slice is refined with the CRF.
    device
        ``"cpu"`` or an accelerator (``"cuda"``, ``"mps"``): tiles and activations live there.
    """
    height, width = (int(s) for s in slice_shape)
    c, k = network.in_channels, network.num_classes
    net_h, net_w = scaled_shape((height, width), network.scale)
    grid = TileGrid.plan(net_h, net_w, tile, overlap, network.multiple)
    pad_h, pad_w = grid.padded_shape()
    pixels, padded = height * width, pad_h * pad_w
    resized = 0 if network.scale == 1.0 else net_h * net_w * (c + k) * 4
    per_slice = (
        pixels * c * input_itemsize  # the slice as read
        + resized  # the slice and its probabilities at the network's scale
        + 2 * pixels * c * 4  # float32 normalised (Y, X, C) and its (C, Y, X) copy
        + padded * c * 4  # reflect-padded copy
        + padded * (k + 1) * 4  # blended probabilities and weight sum
        + pixels * k * 4  # the cropped, divided probabilities
        + pixels * (8 + 1)  # argmax (int64) and the labels
    )
    if crf:
        per_slice += pixels * (c + _CRF_ARRAYS_PER_CLASS * k) * 4
    effective_batch = max(1, min(batch, len(grid)))
    tile_pixels = grid.tile_h * grid.tile_w
    per_pixel = (
        _ACTIVATION_PER_FEATURE * network.base_features + _ACTIVATION_CONSTANT + 2 * k + 2 * c
    )
    per_batch = int(effective_batch * tile_pixels * 4 * per_pixel)
    model = 2 * network.parameters * 4
    on_device = device.split(":", 1)[0] not in ("cpu", "")
    device_bytes = per_batch + network.parameters * 4 if on_device else 0
    return MemoryEstimate(
        model=model,
        per_slice=int(per_slice),
        per_batch=per_batch,
        device_bytes=device_bytes,
        tile=int(tile),
        batch=effective_batch,
    )


def available_memory(device: str = "cpu") -> tuple[int, int | None]:
    """Free bytes now: (main memory, accelerator memory or ``None`` on the CPU).

    Main memory is psutil's ``available`` when psutil is installed, else ``MemAvailable`` from
    ``/proc/meminfo`` (Linux); accelerator memory is ``torch.cuda.mem_get_info``.
    """
    host = _host_available()
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return host, int(free)
    return host, None


def choose_tile(
    network: NetworkSize,
    slice_shape: tuple[int, int],
    *,
    tile: int | None,
    batch: int,
    overlap: int = 64,
    input_itemsize: int = 2,
    crf: bool = False,
    device: str = "cpu",
    available: tuple[int, int | None] | None = None,
) -> MemoryEstimate:
    """Pick the largest tile (then batch), no larger than asked, whose estimate fits in memory.

    Parameters
    ----------
    network, slice_shape, batch, overlap, input_itemsize, crf, device
        See :func:`estimate_memory`.
    tile
        Largest tile side wanted; ``None`` for automatic (at most 1024).
    available
        Free (host, device) bytes; measured with :func:`available_memory` when ``None``.

    Returns
    -------
    MemoryEstimate
        The estimate of the chosen configuration (its ``tile`` and ``batch``).

    Raises
    ------
    InputError
        When even the smallest tile with a batch of one does not fit, saying how much is
        needed and how much is free.
    """
    host_free, device_free = available if available is not None else available_memory(device)
    host_budget = int(host_free * SAFETY_FRACTION)
    device_budget = None if device_free is None else int(device_free * SAFETY_FRACTION)
    wanted = TILE_CANDIDATES[0] if tile is None else tile
    tiles = [wanted] + [t for t in TILE_CANDIDATES if t < wanted and t >= 2 * network.multiple]
    configs = []
    for candidate in tiles:
        size = batch
        while size >= 1:
            configs.append((candidate, size))
            size //= 2
    estimate = None
    for index, (candidate, size) in enumerate(configs):
        estimate = estimate_memory(
            network,
            slice_shape,
            tile=candidate,
            batch=size,
            overlap=overlap,
            input_itemsize=input_itemsize,
            crf=crf,
            device=device,
        )
        fits_device = device_budget is None or estimate.device_bytes <= device_budget
        if estimate.host_bytes <= host_budget and fits_device:
            if index > 0 and tile is not None:
                log.warning(
                    "tile %d px with batch %d does not fit in the free memory (%.0f MiB); using %s",
                    tile,
                    batch,
                    host_free / MiB,
                    estimate.describe(),
                )
            return estimate
    assert estimate is not None
    where = (
        "GPU memory"
        if device_budget is not None and estimate.host_bytes <= host_budget
        else ("memory")
    )
    free = device_free if where == "GPU memory" else host_free
    raise InputError(
        f"not enough {where} for {slice_shape[0]}x{slice_shape[1]} px slices: even "
        f"{estimate.describe()}, but only {(free or 0) / MiB:,.0f} MiB is free. Close other "
        "programs, use a machine with more memory, or crop the image into smaller slices"
    )


def _host_available() -> int:
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    log.warning("cannot tell the free memory on this system; assuming 4 GiB")
    return 4 * 2**30


def dtype_itemsize(dtype: object) -> int:
    """Bytes per value of ``dtype`` (for :func:`estimate_memory`'s ``input_itemsize``)."""
    return int(np.dtype(dtype).itemsize)  # type: ignore[call-overload]
