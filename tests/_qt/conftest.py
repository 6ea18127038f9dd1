"""Fixtures for the widget tests: a real viewer with the plugin's docks, tiny images and models."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_fcnseg._qt.shared import MODELS
from napari_fcnseg.model.checkpoint import save_model
from napari_fcnseg.model.store import ENV_VAR
from tests._qt.helpers import SEGMENT_DOCK, TRAIN_DOCK, disk_image
from tests.helpers import make_tiny_model


@pytest.fixture(autouse=True)
def models_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own models folder (never the user's ~/.napari-fcnseg)."""
    folder = tmp_path / "models"
    monkeypatch.setenv(ENV_VAR, str(folder))
    MODELS.set_folder(None)
    yield folder
    MODELS.set_folder(None)


@pytest.fixture
def notifications():
    """napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    seen: list = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def segment_dock(viewer):
    _, dock = viewer.window.add_plugin_dock_widget("napari-fcnseg", SEGMENT_DOCK)
    return dock


@pytest.fixture
def train_dock(viewer):
    _, dock = viewer.window.add_plugin_dock_widget("napari-fcnseg", TRAIN_DOCK)
    return dock


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return save_model(make_tiny_model(), tmp_path / "tiny.safetensors")


@pytest.fixture(scope="session")
def trained_model_file(tmp_path_factory) -> Path:
    """A tiny model trained briefly on a disk image: probabilities that follow the image."""
    from napari_fcnseg.core.progress import run_to_completion
    from napari_fcnseg.training.samples import TrainingSample
    from napari_fcnseg.training.trainer import TrainConfig, fit

    image, truth = disk_image(seed=5)
    config = TrainConfig(
        max_steps=16, batch_size=4, crop=64, learning_rate=5e-3, validate_every=16, device="cpu"
    )
    result = run_to_completion(
        fit(make_tiny_model(seed=2), [TrainingSample(image, truth)], [], config)
    )
    return save_model(result.model, tmp_path_factory.mktemp("trained") / "disk.safetensors")


@pytest.fixture
def segment(segment_dock, model_file):
    """The Segment form, set to the (untrained) tiny model file and small tiles."""
    return _set_model(segment_dock.segment, model_file)


@pytest.fixture
def segment_trained(segment_dock, trained_model_file):
    """The Segment form, set to the briefly trained tiny model."""
    return _set_model(segment_dock.segment, trained_model_file)


def _set_model(form, path: Path):
    form.model.value = "file"
    form.model_file.value = path
    form.device.value = "cpu"
    form.tile.value = 64
    return form


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # make_napari_viewer's teardown reads item.rep_call (napari's own conftest provides it).
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
