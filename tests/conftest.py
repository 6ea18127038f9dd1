"""Shared fixtures: tiny models and images keep the suite fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_fcnseg.model.checkpoint import SegmentationModel, save_model
from tests.helpers import SHARED_DATA, disk_model, make_tiny_model


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tiny_model() -> SegmentationModel:
    return make_tiny_model()


@pytest.fixture
def tiny_model_file(tmp_path: Path, tiny_model: SegmentationModel) -> Path:
    return save_model(tiny_model, tmp_path / "tiny.safetensors")


@pytest.fixture(scope="session")
def trained_tiny_model() -> SegmentationModel:
    """A tiny model trained briefly on bright disks (shared by the tests; do not change it)."""
    return disk_model()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it ships beside the project only)")
    return SHARED_DATA
