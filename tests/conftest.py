"""Shared fixtures: tiny models and images keep the suite fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_fcnseg.model.checkpoint import SegmentationModel, save_model

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "drosophila_ovary"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


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


@pytest.fixture
def tiny_model() -> SegmentationModel:
    return make_tiny_model()


@pytest.fixture
def tiny_model_file(tmp_path: Path, tiny_model: SegmentationModel) -> Path:
    return save_model(tiny_model, tmp_path / "tiny.safetensors")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it ships beside the project only)")
    return SHARED_DATA
