from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from napari_fcnseg.core.predict import (
    SlicePrediction,
    predict_probabilities,
    predict_slices,
    probabilities_to_labels,
)
from napari_fcnseg.core.progress import Progress, run_to_completion
from napari_fcnseg.core.tiling import TileGrid, axis_tiles
from napari_fcnseg.errors import InputError
from tests.helpers import make_tiny_model


def _predict(model, image, **kwargs):
    kwargs.setdefault("device", "cpu")
    return run_to_completion(predict_probabilities(model, image, **kwargs))


def _untiled(model, image):
    """One forward pass on the whole image, normalised and padded as the core does."""
    from napari_fcnseg.core.normalize import normalization_bounds, normalize_slice
    from napari_fcnseg.core.tiling import round_up

    stack = image[None] if image.ndim == 3 else image[None, ..., None]
    lo, hi = normalization_bounds(stack, model.info.normalization)
    chw = normalize_slice(stack[0], lo, hi)
    m = model.required_multiple
    h, w = chw.shape[1:]
    chw = np.pad(chw, ((0, 0), (0, round_up(h, m) - h), (0, round_up(w, m) - w)), mode="reflect")
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(chw[None])), 1)[0].numpy()
    return probs[:, :h, :w]


@pytest.mark.parametrize("size", [(64, 64), (37, 50), (61, 93)])
def test_single_tile_equals_untiled(tiny_model, rng, size):
    image = rng.random((*size, 3)).astype(np.float32)
    np.testing.assert_allclose(_predict(tiny_model, image), _untiled(tiny_model, image), atol=1e-4)


def test_many_tiles_blend_without_seams(tiny_model, rng):
    image = rng.random((150, 170, 3)).astype(np.float32)
    whole = _predict(tiny_model, image, tile=1024)
    tiled = _predict(tiny_model, image, tile=64, overlap=24, batch=3)
    assert tiled.shape == whole.shape == (2, 150, 170)
    np.testing.assert_allclose(tiled.sum(0), 1.0, atol=1e-5)
    # Tiles see less context at their borders, so values differ a little, but nowhere by much:
    # a seam would show as a line of large differences.
    assert np.abs(tiled - whole).max() < 0.05
    assert (probabilities_to_labels(tiled) == probabilities_to_labels(whole)).mean() > 0.99


def test_tile_grid_covers_the_image():
    for length in (1, 7, 64, 65, 1030, 2049):
        extent, starts = axis_tiles(length, 256, 32, 8)
        assert extent % 8 == 0 and extent <= 256
        assert starts[0] == 0 and starts[-1] + extent >= length
        assert all(b - a <= extent - min(32, extent // 2) for a, b in itertools.pairwise(starts))
    grid = TileGrid.plan(100, 300, 128, 16, 8)
    assert all(w.min() > 0 for w in (grid.weights(y, x) for y, x in grid.origins))


def test_stack_is_processed_slice_by_slice(tiny_model, rng):
    stack = (rng.random((3, 40, 48)) * 4000).astype(np.uint16)
    probs = _predict(tiny_model, stack)
    assert probs.shape == (2, 3, 40, 48)
    model1 = make_tiny_model(in_channels=1)
    events = list(predict_slices(model1, stack, device="cpu"))
    slices = [e for e in events if isinstance(e, SlicePrediction)]
    assert [s.index for s in slices] == [0, 1, 2]
    assert all(isinstance(e, (Progress, SlicePrediction)) for e in events)


def test_progress_counts_tiles(tiny_model, rng):
    image = rng.random((3, 100, 100)).astype(np.float32)
    events = [
        e
        for e in predict_slices(
            tiny_model, image, tile=64, overlap=16, batch=2, device="cpu", axes="ZYX"
        )
        if isinstance(e, Progress)
    ]
    assert events[-1].step == events[-1].total == 3 * 4
    assert [e.step for e in events] == sorted(e.step for e in events)


class CountingModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls, self.info = inner, 0, inner.info

    required_multiple = property(lambda self: self.inner.required_multiple)

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_stopping_mid_stack_stops_the_work(tiny_model, rng):
    counting = CountingModel(tiny_model)
    stack = rng.random((10, 64, 64, 3)).astype(np.float32)
    job = predict_probabilities(counting, stack, device="cpu")
    for event in job:
        if event.step == 2:
            break
    job.close()
    assert counting.calls == 2  # no forward pass after the consumer stopped


class OutOfMemoryAboveModel(CountingModel):
    """Raises the out-of-memory error a GPU raises when a tile is too large (no GPU here)."""

    def forward(self, x):
        if x.shape[-1] > 64:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(x)


def test_out_of_memory_halves_the_tile_and_says_so(tiny_model, rng, caplog):
    image = rng.random((100, 200, 3)).astype(np.float32)
    model = OutOfMemoryAboveModel(tiny_model)
    events = []
    probs = run_to_completion(
        predict_probabilities(model, image, tile=256, device="cpu"), events.append
    )
    assert any("tile size halved" in e.message for e in events)
    assert "tile size halved" in caplog.text
    reference = _predict(tiny_model, image, tile=50)  # 256 -> 200 px tiles -> 100 -> 50
    np.testing.assert_allclose(probs, reference, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int32])
def test_dtypes(tiny_model, rng, dtype):
    image = (rng.random((40, 40, 3)) * 200).astype(dtype)
    probs = _predict(tiny_model, image)
    assert probs.dtype == np.float32 and np.isfinite(probs).all()


def test_intensity_scale_does_not_matter(tiny_model, rng):
    image = rng.random((40, 40, 3))
    a = _predict(tiny_model, (image * 255).astype(np.float32))
    b = _predict(tiny_model, (image * 65535).astype(np.uint16))
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_grey_image_on_rgb_model(tiny_model, rng):
    grey = rng.random((40, 40)).astype(np.float32)
    probs = _predict(tiny_model, grey)
    np.testing.assert_allclose(probs, _predict(tiny_model, np.repeat(grey[..., None], 3, -1)))


def test_nan_is_refused(tiny_model):
    image = np.zeros((32, 32, 3), np.float32)
    image[3, 4, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        _predict(tiny_model, image)


def test_empty_is_refused(tiny_model):
    with pytest.raises(InputError, match="empty"):
        _predict(tiny_model, np.zeros((0, 32, 3), np.float32))


def test_channel_mismatch(tiny_model):
    with pytest.raises(InputError, match="has 2 channels but the model expects 3"):
        _predict(tiny_model, np.zeros((32, 32, 2), np.float32))


def test_bool_and_complex_are_refused(tiny_model):
    for image in (np.zeros((16, 16, 3), bool), np.zeros((16, 16, 3), complex)):
        with pytest.raises(InputError, match="not supported"):
            _predict(tiny_model, image)


def test_labels_from_probabilities():
    probs = np.array([[[0.9, 0.2]], [[0.1, 0.8]]], np.float32)
    labels = probabilities_to_labels(probs)
    assert labels.dtype == np.uint8 and labels.tolist() == [[0, 1]]


def test_bad_settings(tiny_model):
    with pytest.raises(InputError, match="tile"):
        _predict(tiny_model, np.zeros((16, 16, 3)), tile=0)


def _events(model, stack, **kwargs):
    out = []
    for e in predict_slices(model, stack, device="cpu", tile=32, overlap=8, batch=2, **kwargs):
        out.append((e.index, e.probabilities) if isinstance(e, SlicePrediction) else e)
    return out


def test_pipelined_prediction_gives_the_same_events_in_the_same_order(tiny_model, rng):
    stack = rng.random((4, 48, 56, 3)).astype(np.float32)
    sequential = _events(tiny_model, stack, pipeline=False)
    pipelined = _events(tiny_model, stack, pipeline=True)
    assert len(pipelined) == len(sequential)
    for a, b in zip(sequential, pipelined, strict=True):
        if isinstance(a, Progress):
            assert a == b
        else:
            assert a[0] == b[0]
            np.testing.assert_array_equal(a[1], b[1])


def test_pipelined_prediction_raises_a_slices_error_in_the_caller(tiny_model, rng):
    stack = rng.random((3, 32, 32, 3)).astype(np.float32)
    stack[2, 5, 5, 0] = np.nan
    seen = []
    with pytest.raises(InputError, match=r"slice 2.*NaN"):
        for event in predict_slices(tiny_model, stack, device="cpu", pipeline=True):
            if isinstance(event, SlicePrediction):
                seen.append(event.index)
    assert seen == [0, 1]  # the slices before the bad one still came out


def test_closing_a_pipelined_prediction_stops_its_thread(tiny_model, rng):
    import threading

    from napari_fcnseg.core.predict import PIPELINE_DEPTH

    counting = CountingModel(tiny_model)
    stack = rng.random((12, 64, 64, 3)).astype(np.float32)
    job = predict_slices(counting, stack, device="cpu", pipeline=True)
    for event in job:
        if isinstance(event, SlicePrediction):
            break
    job.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("fcnseg-")]
    # The background thread ran at most a few events ahead, never the whole stack.
    assert counting.calls <= 1 + PIPELINE_DEPTH + 1 < 12
