"""The CUDA path, end to end: inference, out-of-memory recovery, CRF, training, the CLI.

Skipped on machines without a CUDA GPU (CI has none); run on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_fcnseg.cli import main
from napari_fcnseg.core.crf import refine_with_crf
from napari_fcnseg.core.memory import NetworkSize, estimate_memory
from napari_fcnseg.core.predict import predict_probabilities
from napari_fcnseg.core.progress import Progress, run_to_completion
from napari_fcnseg.model.checkpoint import SegmentationModel, load_model, save_model
from napari_fcnseg.training.trainer import TrainConfig, fit
from tests.helpers import disks, make_tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def _predict(model, image, **kwargs):
    events: list = []
    result = run_to_completion(predict_probabilities(model, image, **kwargs), events.append)
    return result, events


def _smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.integers(0, 255, (size // 16, size // 16, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 16, axis=0), 16, axis=1)


def test_prediction_on_cuda_matches_the_cpu(rng):
    image = rng.random((150, 170, 3)).astype(np.float32)
    cpu, _ = _predict(make_tiny_model(), image, device="cpu", tile=64, overlap=16)
    gpu, _ = _predict(make_tiny_model(), image, device="cuda", tile=64, overlap=16)
    np.testing.assert_allclose(gpu, cpu, atol=2e-3)
    assert (gpu.argmax(0) == cpu.argmax(0)).mean() > 0.999


def test_pipelined_prediction_on_cuda_matches_the_sequential_one(rng):
    from napari_fcnseg.core.predict import SlicePrediction, predict_slices

    stack = rng.random((5, 120, 140, 3)).astype(np.float32)
    model = make_tiny_model()

    def slices(pipeline: bool) -> list[tuple[int, np.ndarray]]:
        events = predict_slices(model, stack, device="cuda", tile=64, pipeline=pipeline)
        return [(e.index, e.probabilities) for e in events if isinstance(e, SlicePrediction)]

    pipelined, sequential = slices(True), slices(False)
    assert [z for z, _ in pipelined] == [z for z, _ in sequential] == list(range(5))
    for (_, a), (_, b) in zip(pipelined, sequential, strict=True):
        np.testing.assert_array_equal(a, b)


def test_real_out_of_memory_halves_the_tile_and_gives_the_same_result(rng):
    """A genuine CUDA out-of-memory error (memory capped), not a simulated one."""
    torch.manual_seed(0)
    model = SegmentationModel.create(["background", "egg"], 3, depth=3, base_features=16).eval()
    image = _smooth_image(rng, 1024)
    reference, _ = _predict(model, image, device="cuda", tile=256, batch=1)
    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    total = torch.cuda.get_device_properties(0).total_memory
    # Room for the weights and 256-px tiles, not for one 1024-px tile (~0.5 GiB of activations).
    cap = torch.cuda.memory_allocated() + 160 * 2**20
    torch.cuda.set_per_process_memory_fraction(cap / total)
    try:
        result, events = _predict(model, image, device="cuda", tile=1024, batch=1)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    messages = [e.message for e in events if isinstance(e, Progress)]
    assert any("tile size halved" in m for m in messages)
    assert (result.argmax(0) == reference.argmax(0)).mean() > 0.999


def test_memory_estimate_bounds_the_measured_cuda_peak(rng):
    torch.manual_seed(0)
    model = SegmentationModel.create(["background", "egg"], 3).eval().cuda()
    image = _smooth_image(rng, 1024)
    _predict(model, image, device="cuda", tile=512, batch=4)  # warm-up (cuDNN workspaces)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    _predict(model, image, device="cuda", tile=512, batch=4)
    measured = (
        torch.cuda.max_memory_allocated() - before + sum(p.numel() * 4 for p in model.parameters())
    )
    size = NetworkSize.of(model)
    estimate = estimate_memory(size, (1024, 1024), tile=512, batch=4, device="cuda")
    assert measured <= estimate.device_bytes, (measured, estimate.device_bytes)
    assert estimate.device_bytes < 4 * measured, (measured, estimate.device_bytes)


def _crf_inputs(rng, shape):
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    mask = (yy - shape[-2] / 2) ** 2 + (xx - shape[-1] / 2) ** 2 < (shape[-1] / 3) ** 2
    mask = np.broadcast_to(mask, shape)
    image = (mask[..., None] * 120 + rng.normal(60, 25, (*shape, 3))).clip(0, 255).astype(np.uint8)
    fg = np.clip(0.5 + 0.3 * (mask - 0.5) + rng.normal(0, 0.25, shape), 0.01, 0.99)
    return image, np.stack([1 - fg, fg]).astype(np.float32)


@pytest.mark.parametrize(("shape", "spacing"), [((256, 256), None), ((6, 96, 96), (2, 1, 1))])
def test_crf_on_cuda_matches_the_cpu(rng, shape, spacing):
    image, probs = _crf_inputs(rng, shape)
    cpu = refine_with_crf(image, probs, device="cpu", spacing=spacing)
    gpu = refine_with_crf(image, probs, device="cuda", spacing=spacing)
    assert gpu.dtype == np.float32 and gpu.shape == probs.shape
    assert np.abs(gpu - cpu).max() < 1e-3
    assert (gpu.argmax(0) == cpu.argmax(0)).mean() > 0.999


def test_crf_on_cuda_is_differentiable():
    from napari_fcnseg.model.crf_rnn import CrfRnn

    crf = CrfRnn(2, 3, bilateral_spatial_sigma=10.0).cuda()
    image = torch.rand(3, 48, 48, device="cuda") * 255
    logits = torch.randn(2, 48, 48, device="cuda", requires_grad=True)
    crf(logits[None], image[None]).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert all(p.grad is not None for p in crf.parameters() if p.requires_grad)


def test_training_on_cuda_learns_and_returns_a_cpu_model():
    torch.manual_seed(0)
    model = SegmentationModel.create(["background", "egg"], 3, depth=2, base_features=8)
    config = TrainConfig(
        max_steps=60, validate_every=20, batch_size=4, crop=64, learning_rate=1e-2, device="cuda"
    )
    result = run_to_completion(fit(model, [disks(i) for i in range(4)], [disks(100)], config))
    assert result.best_val_iou > 0.9
    assert next(result.model.parameters()).device.type == "cpu"
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_joint_crf_training_on_cuda():
    torch.manual_seed(0)
    model = SegmentationModel.create(["background", "egg"], 3, depth=2, base_features=8)
    config = TrainConfig(
        max_steps=40,
        validate_every=20,
        batch_size=4,
        crop=64,
        learning_rate=1e-2,
        device="cuda",
        train_crf=True,
        crf_steps=10,
        crf_crop=64,
        crf_validate_every=5,
    )
    result = run_to_completion(fit(model, [disks(i) for i in range(4)], [disks(100)], config))
    assert result.best_val_iou > 0.8
    assert next(result.model.parameters()).device.type == "cpu"


def test_cli_predict_on_cuda(tmp_path: Path, rng):
    model_file = save_model(make_tiny_model(), tmp_path / "tiny.safetensors")
    image = tmp_path / "scan.tif"
    tifffile.imwrite(image, _smooth_image(rng, 128))
    out = tmp_path / "out"
    assert main(["predict", str(image), "--out", str(out), "--model", str(model_file),
                 "--device", "cuda", "--crf"]) == 0  # fmt: skip
    written = sorted(out.iterdir())
    assert written, "no output written"
    labels = tifffile.imread(written[0])
    assert labels.shape == (128, 128)
    assert load_model(model_file) is not None
