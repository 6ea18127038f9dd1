"""Fixtures of the training tests: a toy task a tiny U-Net learns in a second."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_fcnseg.model.checkpoint import SegmentationModel
from napari_fcnseg.training.samples import TrainingSample


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


def small_model(depth: int = 2, seed: int = 0, channels: int = 3) -> SegmentationModel:
    torch.manual_seed(seed)
    return SegmentationModel.create(["background", "egg"], channels, depth=depth, base_features=8)


@pytest.fixture
def toy_train() -> list[TrainingSample]:
    return [disks(i) for i in range(4)]


@pytest.fixture
def toy_val() -> list[TrainingSample]:
    return [disks(100)]


@pytest.fixture
def small() -> SegmentationModel:
    return small_model()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and lose a lot when other jobs share the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
