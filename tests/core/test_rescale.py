"""The working scale: resizing helpers, prediction at a model's scale, and its memory estimate."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from napari_fcnseg.core.memory import NetworkSize, estimate_memory
from napari_fcnseg.core.predict import predict_probabilities
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.core.rescale import (
    resize_channels,
    resize_labels,
    scaled_shape,
)
from napari_fcnseg.errors import InputError
from napari_fcnseg.model.scale import check_scale


def _predict(model, image, **kwargs):
    return run_to_completion(predict_probabilities(model, image, device="cpu", **kwargs))


def test_scaled_shape_rounds_and_keeps_a_pixel():
    assert scaled_shape((512, 301), 0.5) == (256, 150)
    assert scaled_shape((3, 3), 0.1) == (1, 1)
    assert scaled_shape((10, 20), 2.0) == (20, 40)


@pytest.mark.parametrize("shape", [(16, 24), (80, 70)])
def test_resized_probabilities_stay_probabilities(rng, shape):
    probs = rng.random((3, 40, 48)).astype(np.float32)
    probs /= probs.sum(0)
    out = resize_channels(probs, shape)
    assert out.shape == (3, *shape) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    assert out.min() >= probs.min() - 1e-6 and out.max() <= probs.max() + 1e-6


def test_shrinking_is_antialiased():
    flat = np.full((2, 30, 40), 0.25, np.float32)
    np.testing.assert_allclose(resize_channels(flat, (15, 20)), 0.25, atol=1e-6)
    checkerboard = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)[None]
    # Plain bilinear sampling at half size would pick one colour of the board; antialiasing
    # averages it to grey.
    assert np.abs(resize_channels(checkerboard, (32, 32)) - 0.5).max() < 0.05


def test_labels_take_the_nearest_pixel_and_invent_nothing(rng):
    labels = rng.choice(np.array([0, 1, 3, 255], np.uint8), size=(37, 41))
    half = resize_labels(labels, (18, 20))
    assert half.shape == (18, 20) and half.dtype == np.uint8
    assert set(np.unique(half)) <= {0, 1, 3, 255}
    np.testing.assert_array_equal(resize_labels(labels, labels.shape), labels)
    np.testing.assert_array_equal(resize_labels(np.arange(4)[None].repeat(2, 0), (1, 2)), [[1, 3]])


@pytest.mark.parametrize("bad", [0, -1, 0.05, 5, "x", None])
def test_unusable_scales_are_refused_with_what_it_means(bad):
    with pytest.raises(InputError, match="scale"):
        check_scale(bad)


def test_prediction_at_half_scale_is_the_half_size_prediction_resized(tiny_model, rng):
    import torch

    from napari_fcnseg.core.normalize import normalization_bounds, normalize_slice

    image = (rng.random((96, 80, 3)) * 255).astype(np.uint8)
    half = copy.deepcopy(tiny_model)
    half.info.scale = 0.5
    probs = _predict(half, image)
    assert probs.shape == (2, 96, 80)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    # By hand: normalise at full size, shrink, one forward pass, enlarge the probabilities.
    lo, hi = normalization_bounds(image[None], tiny_model.info.normalization)
    small = resize_channels(normalize_slice(image, lo, hi), (48, 40))
    with torch.no_grad():
        small_probs = torch.softmax(tiny_model(torch.from_numpy(small[None])), 1)[0].numpy()
    np.testing.assert_allclose(probs, resize_channels(small_probs, (96, 80)), atol=1e-4)


def test_stacks_and_tiles_at_a_scale(tiny_model, rng):
    stack = rng.random((3, 70, 90, 3)).astype(np.float32)
    half = copy.deepcopy(tiny_model)
    half.info.scale = 0.5
    whole = _predict(half, stack)
    tiled = _predict(half, stack, tile=24, overlap=8, batch=2)
    assert whole.shape == tiled.shape == (2, 3, 70, 90)
    assert np.abs(whole - tiled).max() < 0.05
    # (the stack is normalised with bounds of all its slices, so the values differ slightly)
    np.testing.assert_allclose(whole[:, 1], _predict(half, stack[1]), atol=1e-3)


def test_memory_estimate_follows_the_scale():
    net = NetworkSize(in_channels=3, num_classes=2, base_features=16, parameters=1, multiple=8)
    half = NetworkSize(**{**net.__dict__, "scale": 0.5})
    full = estimate_memory(net, (4096, 4096), tile=4096, batch=1)
    small = estimate_memory(half, (4096, 4096), tile=4096, batch=1)
    assert small.per_batch * 3 < full.per_batch  # a quarter of the pixels through the network
    assert small.per_slice > 0.5 * full.per_slice  # the slice itself is still full size
