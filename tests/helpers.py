"""Helpers the tests share: tiny models, toy images and crafted files (no fixtures here)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from skimage import io as skio

from napari_fcnseg.model.checkpoint import SegmentationModel
from napari_fcnseg.training.samples import TrainingSample

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "drosophila_ovary"


def make_tiny_model(in_channels: int = 3, num_classes: int = 2, seed: int = 0) -> SegmentationModel:
    """A depth-3, 8-feature U-Net (about 23k parameters) with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    names = ["background"] + [f"class {i}" for i in range(1, num_classes)]
    model = SegmentationModel.create(names, in_channels, depth=3, base_features=8)
    model.train()
    with torch.no_grad():  # a few forward passes give BatchNorm running statistics
        for _ in range(3):
            model(torch.rand(2, in_channels, 64, 64))
    return model.eval()


def disks(seed: int, size: int = 64, channels: int = 3) -> TrainingSample:
    """Bright disks (label 1) on a dark, noisy background."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint8)
    for _ in range(3):
        cy, cx = r.integers(10, size - 10, 2).tolist()
        rad = int(r.integers(5, 12))
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < rad**2] = 1
    noise = r.normal(60, 20, (size, size, channels))
    image = (labels[..., None] * 120 + noise).clip(0, 255).astype(np.uint8)
    return TrainingSample(image if channels > 1 else image[..., 0], labels, name=f"disks{seed}")


def disk_model(steps: int = 24, seed: int = 2) -> SegmentationModel:
    """A tiny model trained briefly on :func:`disks`: it finds bright disks on clean images."""
    from napari_fcnseg.core.progress import run_to_completion
    from napari_fcnseg.training.trainer import TrainConfig, fit

    config = TrainConfig(
        max_steps=steps, batch_size=4, crop=64, learning_rate=5e-3, validate_every=1000,
        device="cpu",
    )  # fmt: skip
    train = [disks(s) for s in range(4)]
    return run_to_completion(fit(make_tiny_model(seed=seed), train, [], config)).model.eval()


def hard_disks_stack(hard: int = 2, depth: int = 4) -> np.ndarray:
    """A (Z, 64, 64, 3) stack of :func:`disks` images; slice ``hard`` dimmed and made noisy."""
    stack = np.stack([disks(10 + z).image for z in range(depth)]).astype(np.float32)
    noise = np.random.default_rng(1).normal(0, 25, stack[hard].shape)
    stack[hard] = 60 + 0.25 * (stack[hard] - 60) + noise
    return stack.clip(0, 255).astype(np.uint8)


def small_model(depth: int = 2, seed: int = 0, channels: int = 3) -> SegmentationModel:
    torch.manual_seed(seed)
    return SegmentationModel.create(["background", "egg"], channels, depth=depth, base_features=8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def huge_png(width: int = 1_000_000, height: int = 1_000_000) -> bytes:
    """A valid-looking 100-byte RGB PNG that declares ``width`` x ``height`` pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def huge_jpeg(path: Path, side: int = 65_000) -> None:
    """A small JPEG whose frame header is patched to declare ``side`` x ``side`` pixels."""
    skio.imsave(path, np.zeros((16, 16, 3), np.uint8), check_contrast=False)
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))


def touching_discs(size=(120, 200)):
    """Two discs (radii 40 and 30) joined by a 10 px neck, and a third cut by the border."""
    yy, xx = np.mgrid[: size[0], : size[1]]
    a = (yy - 60) ** 2 + (xx - 55) ** 2 < 40**2
    b = (yy - 60) ** 2 + (xx - 125) ** 2 < 30**2
    neck = (np.abs(yy - 60) < 5) & (xx > 80) & (xx < 110)
    c = (yy - 60) ** 2 + (xx - 205) ** 2 < 25**2  # centre outside the image
    truth = np.zeros(size, np.uint16)
    truth[a] = 1
    truth[b | neck & ~a] = 2
    truth[c] = 3
    return a | b | neck | c, truth, (a, b, c)


def ring(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright ring (an object with a hole, as an egg chamber's dark inside can look) and
    the mask of its hole; :func:`disk_model` finds the ring and leaves the hole background."""
    yy, xx = np.mgrid[:size, :size]
    r2 = (yy - size // 2) ** 2 + (xx - size // 2) ** 2
    bright = (r2 < (size // 3) ** 2) & (r2 >= (size // 7) ** 2)
    noise = np.random.default_rng(seed).normal(60, 20, (size, size, 3))
    image = (bright[..., None] * 120 + noise).clip(0, 255).astype(np.uint8)
    return image, r2 < (size // 10) ** 2
