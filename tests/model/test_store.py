from __future__ import annotations

import json

import pytest
import torch

from napari_fcnseg.errors import InputError, ModelFileError
from napari_fcnseg.model.store import ENV_VAR, ModelStore, default_store_folder
from tests.helpers import make_tiny_model


def _weight(model):
    return next(iter(model.state_dict().values())).clone()


def test_empty_store(tmp_path):
    store = ModelStore(tmp_path / "models")
    assert store.versions() == [] and store.active is None and len(store) == 0
    with pytest.raises(ModelFileError, match="holds no model yet"):
        store.path()
    with pytest.raises(InputError, match="no model version 'v001'"):
        store.activate("v001")


def test_versions_are_numbered_and_activated(tmp_path):
    store = ModelStore(tmp_path)
    first, second = make_tiny_model(seed=1), make_tiny_model(seed=2)
    assert store.add(first, "initial") == "v001"
    assert store.add(second, "fine-tuned", parent="v001") == "v002"
    assert [v.version for v in store.versions()] == ["v001", "v002"]
    assert store.active == "v002" and "v001" in store
    assert store.get("v002").parent == "v001" and store.get("v002").note == "fine-tuned"
    loaded = store.load()
    assert loaded.info.provenance["store_version"] == "v002"
    assert torch.equal(_weight(loaded), _weight(second))
    store.activate("v001")  # going back
    assert ModelStore(tmp_path).active == "v001"
    assert torch.equal(_weight(store.load()), _weight(first))
    assert store.add(make_tiny_model(seed=3), activate=False) == "v003"
    assert store.active == "v001"
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["active"] == "v001" and len(index["versions"]) == 3
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert hidden == [".lock"]  # the folder's lock file, and no temporary files


def test_stray_file_is_not_overwritten(tmp_path):
    (tmp_path / "v001.safetensors").write_bytes(b"not mine")
    store = ModelStore(tmp_path)
    assert store.add(make_tiny_model()) == "v002"
    assert (tmp_path / "v001.safetensors").read_bytes() == b"not mine"


def test_corrupt_index_says_what_to_do(tmp_path):
    (tmp_path / "index.json").write_text("{nope")
    with pytest.raises(ModelFileError, match="fix or delete it"):
        ModelStore(tmp_path).versions()


def test_missing_file_cannot_be_activated(tmp_path):
    store = ModelStore(tmp_path)
    store.add(make_tiny_model())
    store.add(make_tiny_model())
    (tmp_path / "v001.safetensors").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        store.activate("v001")
    assert store.active == "v002"


def test_default_folder_can_be_overridden(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "elsewhere"))
    assert default_store_folder() == tmp_path / "elsewhere"
    assert ModelStore().folder == tmp_path / "elsewhere"
    monkeypatch.delenv(ENV_VAR)
    assert default_store_folder().parts[-2:] == (".napari-fcnseg", "models")


def test_two_stores_adding_at_once_both_keep_their_version(tmp_path):
    import threading

    stores = [ModelStore(tmp_path), ModelStore(tmp_path)]
    models = [make_tiny_model(seed=1), make_tiny_model(seed=2)]
    barrier = threading.Barrier(2)
    names = []

    def add(i):
        barrier.wait()
        names.append(stores[i].add(models[i], f"run {i}"))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(names) == ["v001", "v002"]
    assert [v.version for v in ModelStore(tmp_path).versions()] == ["v001", "v002"]
