"""The bundled default model: loads safely, describes itself, and segments the sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_fcnseg.core.metrics import iou_and_dice
from napari_fcnseg.core.predict import predict_probabilities
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.model.checkpoint import load_model
from napari_fcnseg.model.default import default_model_path

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def default_model():
    path = default_model_path()
    assert path is not None, "the package must ship its default model"
    return load_model(path)


def test_bundled_model_is_small_and_self_describing(default_model):
    path = default_model_path()
    assert path.stat().st_size < 5_000_000
    info = default_model.info
    assert info.class_names == ["background", "egg chamber"]
    assert info.in_channels == 3
    assert "Borovec" in info.provenance["data"]
    assert info.provenance["script"] == "scripts/train_default_model.py"


def test_bundled_model_segments_the_sample(default_model):
    image = tifffile.imread(SAMPLE / "egg_chambers.tif")
    truth = tifffile.imread(SAMPLE / "egg_chambers_labels.tif") > 0
    probs = run_to_completion(predict_probabilities(default_model, image, device="cpu"))
    iou, _ = iou_and_dice(probs.argmax(0) > 0, truth)
    assert iou > 0.85


def test_bundled_model_segments_a_real_slice(default_model, shared_data):
    from skimage import io

    image = io.imread(shared_data / "image" / "insitu7331.jpg")
    truth = io.imread(shared_data / "annot_struct" / "insitu7331.png") > 0
    probs = run_to_completion(predict_probabilities(default_model, image, device="cpu"))
    # The model was trained on this slice: this checks the shipped weights, not generalisation
    # (leave-one-out figures are in benchmarks/bench_quality.py).
    assert iou_and_dice(probs.argmax(0) > 0, truth)[0] > 0.9
    assert np.isfinite(probs).all()
