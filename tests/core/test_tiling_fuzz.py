"""Property-based tests of tiling and stitching: any shape, any tile size, no seams."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from napari_fcnseg.core.normalize import normalization_bounds, normalize_slice
from napari_fcnseg.core.predict import predict_probabilities
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.core.tiling import TileGrid
from napari_fcnseg.model.checkpoint import ModelInfo

FUZZ = settings(max_examples=30, deadline=None)


class PixelwiseModel(nn.Module):
    """A stand-in network whose output at a pixel depends on that pixel only.

    Logits are ``(x, 0)`` for the first channel ``x`` of the normalised image, so the foreground
    probability is ``sigmoid(x)``: stitching tiles of it must give back exactly that, whatever
    the tiling.
    """

    def __init__(self, channels: int, multiple: int):
        super().__init__()
        self.info = ModelInfo(["background", "fg"], channels, {"name": "unet"})
        self.required_multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.zeros_like(x[:, 0]), x[:, 0]], dim=1)


@FUZZ
@given(
    height=st.integers(1, 200),
    width=st.integers(1, 200),
    tile=st.integers(1, 160),
    overlap=st.integers(0, 64),
    multiple=st.sampled_from([1, 8, 16]),
)
def test_tiles_cover_every_pixel_with_positive_weight(height, width, tile, overlap, multiple):
    grid = TileGrid.plan(height, width, tile, overlap, multiple)
    assert grid.tile_h % multiple == 0 and grid.tile_w % multiple == 0
    largest = max(multiple, tile - tile % multiple)
    assert grid.tile_h <= largest and grid.tile_w <= largest
    pad_h, pad_w = grid.padded_shape()
    assert pad_h >= height and pad_w >= width
    total = np.zeros((pad_h, pad_w), np.float32)
    for y, x in grid.origins:
        assert y >= 0 and x >= 0
        weights = grid.weights(y, x)
        assert weights.shape == (grid.tile_h, grid.tile_w) and (weights > 0).all()
        total[y : y + grid.tile_h, x : x + grid.tile_w] += weights
    assert (total[:height, :width] > 0).all()


@FUZZ
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    tile=st.integers(1, 96),
    overlap=st.integers(0, 32),
    multiple=st.sampled_from([8, 16]),
    channels=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**16),
)
def test_stitching_a_pixelwise_function_reproduces_it(
    height, width, tile, overlap, multiple, channels, seed
):
    rng = np.random.default_rng(seed)
    image = (rng.random((height, width, channels)) * 1000).astype(np.float32)
    model = PixelwiseModel(channels, multiple)
    probs = run_to_completion(
        predict_probabilities(
            model, image, axes="YXC", tile=tile, overlap=overlap, batch=3, device="cpu"
        )
    )
    assert probs.shape == (2, height, width) and probs.dtype == np.float32
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    lo, hi = normalization_bounds(image[None], model.info.normalization)
    expected = 1 / (1 + np.exp(-normalize_slice(image, lo, hi)[0]))
    np.testing.assert_allclose(probs[1], expected, atol=1e-5)
