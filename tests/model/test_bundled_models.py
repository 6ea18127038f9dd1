"""Bundled models by name: ``--model egg-chambers``, ``fcnseg models``."""

from __future__ import annotations

import json

from napari_fcnseg.cli import main
from napari_fcnseg.model.default import (
    DEFAULT_MODEL,
    bundled_models,
    default_model_path,
    resolve_model_path,
)


def test_the_default_is_listed_first_and_resolves_by_name(tmp_path, monkeypatch):
    models = bundled_models()
    assert next(iter(models)) == DEFAULT_MODEL == "egg-chambers"
    assert models[DEFAULT_MODEL] == default_model_path()
    assert resolve_model_path("egg-chambers") == resolve_model_path(None)
    assert resolve_model_path("default") == default_model_path()
    # a file of that name in the working folder is taken as the file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "egg-chambers").write_bytes(b"x")
    assert resolve_model_path("egg-chambers") == tmp_path.joinpath("egg-chambers").relative_to(
        tmp_path
    )


def test_fcnseg_models_lists_names_and_classes(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "egg-chambers (default)" in text and "1 egg chamber" in text
    assert main(["models", "--json"]) == 0
    [row] = [r for r in json.loads(capsys.readouterr().out)["models"] if r["default"]]
    assert row["name"] == "egg-chambers" and row["classes"][0] == "background"
    assert row["card"].endswith("egg_chambers.md")


def test_the_bundled_egg_models_fill_holes_as_their_recipe_does():
    from napari_fcnseg.model.checkpoint import read_model_info
    from napari_fcnseg.training.egg_recipe import egg_chamber_model

    for name, path in bundled_models().items():
        assert read_model_info(path).fill_holes, f"{name}: egg chambers are solid"
    assert egg_chamber_model().info.fill_holes and egg_chamber_model(structure=True).info.fill_holes
