"""Fixtures of the training tests: a toy task a tiny U-Net learns in a second."""

from __future__ import annotations

import pytest
import torch

from napari_fcnseg.model.checkpoint import SegmentationModel
from napari_fcnseg.training.samples import TrainingSample
from tests.helpers import disks, small_model


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
