import numpy as np
import pytest
import torch

from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.errors import ModelFileError
from napari_fcnseg.model.checkpoint import load_model, save_model
from napari_fcnseg.model.combined import (
    attach_crf,
    detach_crf,
    model_crf,
    refine_with_model_crf,
)
from napari_fcnseg.training.trainer import TrainConfig, fit
from tests.helpers import disks


def test_crf_weights_round_trip(small, tmp_path):
    crf = attach_crf(small, num_iterations=3, bilateral_spatial_sigma=20.0)
    with torch.no_grad():
        crf.compatibility.add_(0.25)
    path = save_model(small, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.info.crf == crf.config() and not loaded.info.crf["normalize_image"]
    assert torch.equal(model_crf(loaded).compatibility, crf.compatibility)
    sample = disks(0)
    probs = np.full((2, 64, 64), 0.5, np.float32)
    probs[1, sample.labels > 0] = 0.6
    probs[0] = 1 - probs[1]
    refined = refine_with_model_crf(loaded, sample.image, probs)
    assert refined.shape == probs.shape and np.allclose(refined.sum(0), 1, atol=1e-5)
    detach_crf(loaded)
    assert model_crf(loaded) is None and loaded.info.crf is None
    with pytest.raises(ModelFileError, match="no trained CRF"):
        refine_with_model_crf(loaded, sample.image, probs)


def test_joint_training_runs_and_learns_crf(small, toy_train, toy_val):
    config = TrainConfig(
        max_steps=20,
        validate_every=10,
        batch_size=4,
        crop=64,
        learning_rate=1e-2,
        device="cpu",
        train_crf=True,
        crf_steps=4,
        crf_batch_size=2,
        crf_crop=32,
        crf_validate_every=2,
    )
    events = []
    result = run_to_completion(fit(small, toy_train, toy_val, config), events.append)
    phases = [e.info["phase"] for e in events]
    assert phases.count("crf") == 4 and result.steps == 24
    assert any(h["crf"] for h in result.history)
    crf = model_crf(result.model)
    if crf is not None:  # kept only when it beat the U-Net alone on validation
        assert result.model.info.crf == crf.config()
        best = next(h for h in result.history if h["val_iou"] == result.best_val_iou)
        assert best["crf"]
        if best["step"] > 20:  # chosen after CRF steps: the layer has learned
            assert not torch.equal(crf.compatibility, -torch.eye(2))
    else:
        assert result.model.info.crf is None
