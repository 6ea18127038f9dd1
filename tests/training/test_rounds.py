import pytest
import torch

from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.errors import InputError
from napari_fcnseg.model.checkpoint import save_model
from napari_fcnseg.model.store import ModelStore
from napari_fcnseg.training.dataset import AnnotatedSet
from napari_fcnseg.training.finetune import FineTuneSettings
from napari_fcnseg.training.rounds import CORRECTIONS, base_model, correction_round
from tests.helpers import disks, small_model

FAST = dict(batch_size=4, crop=64, device="cpu", max_seconds=None, validate_seconds=0.01)


def test_every_round_learns_from_every_correction_so_far(tmp_path):
    store = ModelStore(tmp_path / "models")
    start = save_model(small_model(), tmp_path / "start.safetensors")
    settings = FineTuneSettings(max_steps=2, learning_rate=1e-2, **FAST)
    first = disks(0, size=96)
    job = correction_round(store, [first], settings, recorded_model=str(start))
    result = run_to_completion(job)
    assert result.parent == "start.safetensors" and result.corrections == 1
    second = disks(1, size=96)
    job = correction_round(store, [second], settings, recorded_model=str(start))
    result = run_to_completion(job)
    assert result.corrections == 2  # the first slice is still learnt from
    names = [it.name for it in AnnotatedSet.open(store.folder / CORRECTIONS).items]
    assert names == ["disks0", "disks1"]
    trained = result.outcome.trained
    assert trained.info.provenance["fine_tune"]["corrections"] == ["disks0", "disks1"]


def test_a_round_that_loses_keeps_the_active_version(tmp_path):
    store = ModelStore(tmp_path / "models")
    good = small_model()
    store.add(good, "start")
    settings = FineTuneSettings(max_steps=3, learning_rate=50.0, **FAST)
    result = run_to_completion(correction_round(store, [disks(0, size=96)], settings))
    assert not result.outcome.improved
    assert result.version == "v002" and store.active == "v001" == result.active
    assert "v001 stays active (choose v002 under 'version' to use it anyway)" in result.message()
    kept = store.load("v001").state_dict()
    assert all(torch.equal(kept[k], v) for k, v in good.state_dict().items())


def test_a_round_on_an_empty_folder_never_activates_a_loser(tmp_path):
    store = ModelStore(tmp_path / "models")
    start = save_model(small_model(), tmp_path / "start.safetensors")
    settings = FineTuneSettings(max_steps=3, learning_rate=50.0, **FAST)
    job = correction_round(store, [disks(0, size=96)], settings, recorded_model=str(start))
    result = run_to_completion(job)
    assert result.version == "v001" and store.active is None


def test_base_model_prefers_the_model_that_made_the_labels(tmp_path):
    store = ModelStore(tmp_path / "models")
    store.add(small_model(), "one")
    store.add(small_model(seed=1), "two")
    assert base_model("v001", store) == (store.path("v001"), "v001")
    assert base_model("", store) == (store.path("v002"), "v002")
    other = save_model(small_model(), tmp_path / "mine.safetensors")
    assert base_model(str(other), store) == (other, "mine.safetensors")


def test_round_errors_come_before_the_job_runs(tmp_path):
    store = ModelStore(tmp_path / "models")
    with pytest.raises(InputError, match="nothing to learn from"):
        correction_round(store, [], FineTuneSettings())
    with pytest.raises(InputError, match="replay_fraction"):
        correction_round(store, [disks(0)], FineTuneSettings(replay_fraction=2.0))
