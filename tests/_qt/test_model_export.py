"""Export for bioimage.io, from the Fine-tune form: the chosen version as a package."""

from __future__ import annotations

import zipfile

import pytest

from napari_fcnseg._qt.shared import MODELS
from napari_fcnseg.model.checkpoint import load_model
from napari_fcnseg.model.store import ModelStore
from tests.helpers import make_tiny_model

pytest.importorskip("bioimageio.core")


def test_the_chosen_version_is_exported_and_loads_back(qtbot, tmp_path, train_dock):
    store = ModelStore(MODELS.folder)
    store.add(make_tiny_model(seed=1), "first")
    store.add(make_tiny_model(seed=2), "second")
    MODELS.changed.emit()
    finetune = train_dock.finetune
    finetune.version.value = "v001"
    panel = finetune.export
    out = tmp_path / "shared" / "first"
    out.parent.mkdir()
    ended = {"check_params_cb": lambda on: not on, "timeout": 60_000}
    with qtbot.waitSignal(panel.runner.running, **ended):
        panel.export_to(out)
    package = out.with_suffix(".zip")
    assert "rdf.yaml" in zipfile.ZipFile(package).namelist()
    assert "passed its own test" in panel.status.value and panel.button.enabled
    exported, chosen = load_model(package), load_model(store.path("v001"))
    for a, b in zip(exported.state_dict().values(), chosen.state_dict().values(), strict=True):
        assert (a == b).all()


def test_without_versions_the_bundled_model_is_the_one_offered(train_dock):
    from napari_fcnseg.model.default import default_model_path

    assert train_dock.finetune.version.value is None
    assert train_dock.finetune.chosen_model_path() == default_model_path()
