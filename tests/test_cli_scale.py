"""``fcnseg predict`` with lazy inputs, OME-Zarr outputs, memory planning and a Dask cluster."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_fcnseg.cli import main
from napari_fcnseg.core import memory
from napari_fcnseg.io.ome_zarr import read_ome_zarr_labels


@pytest.fixture
def model_file(tmp_path):
    from napari_fcnseg.model.checkpoint import save_model
    from tests.helpers import make_tiny_model

    return save_model(make_tiny_model(1), tmp_path / "m.safetensors")


@pytest.fixture
def zarr_stack(tmp_path, rng):
    path = tmp_path / "in" / "stack.zarr"
    data = (rng.random((3, 40, 50)) * 4000).astype(np.uint16)
    zarr.create_array(str(path), shape=data.shape, chunks=(1, 40, 50), dtype=data.dtype)[:] = data
    return path


def _predict(*args, model):
    return main(["predict", *map(str, args), "--model", str(model), "--device", "cpu"])


def test_zarr_in_ome_zarr_out_equals_tiff_out(tmp_path, zarr_stack, model_file):
    out = tmp_path / "labels.ome.zarr"
    assert _predict(zarr_stack, "--out", out, "--tile", "32", model=model_file) == 0
    labels, names = read_ome_zarr_labels(out)
    assert labels.shape == (3, 40, 50) and names == ["background", "class 1"]
    assert _predict(zarr_stack, "--out", tmp_path / "tif", "--tile", "32", model=model_file) == 0
    np.testing.assert_array_equal(labels[:], tifffile.imread(tmp_path / "tif" / "stack_labels.tif"))


def test_folder_with_format_ome_zarr(tmp_path, zarr_stack, model_file, rng):
    tifffile.imwrite(
        zarr_stack.parent / "b.tif",
        (rng.random((2, 30, 30)) * 255).astype(np.uint8),
        imagej=True,
        metadata={"axes": "ZYX"},
    )
    out = tmp_path / "out"
    assert _predict(zarr_stack.parent, "--out", out, "--format", "ome-zarr", model=model_file) == 0
    assert sorted(p.name for p in out.iterdir()) == ["b_labels.ome.zarr", "stack_labels.ome.zarr"]


def test_one_ome_zarr_for_several_inputs_is_refused(tmp_path, zarr_stack, model_file, capsys):
    code = _predict(zarr_stack, zarr_stack, "--out", tmp_path / "x.ome.zarr", model=model_file)
    assert code == 2
    assert "--format ome-zarr" in capsys.readouterr().err


def test_ome_zarr_output_is_not_overwritten(tmp_path, zarr_stack, model_file, capsys):
    out = tmp_path / "labels.ome.zarr"
    assert _predict(zarr_stack, "--out", out, model=model_file) == 0
    assert _predict(zarr_stack, "--out", out, model=model_file) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _predict(zarr_stack, "--out", out, "--overwrite", model=model_file) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "labels.ome.zarr", "m.safetensors"]


def test_tile_shrinks_when_memory_is_tight(tmp_path, zarr_stack, model_file, monkeypatch, caplog):
    need = memory.estimate_memory(
        memory.NetworkSize(1, 2, 8, 25_000, 4), (40, 50), tile=64, batch=4
    ).host_bytes
    monkeypatch.setattr(memory, "_host_available", lambda: int(need))
    assert _predict(zarr_stack, "--out", tmp_path / "o", "--tile", "64", model=model_file) == 0
    assert "does not fit" in caplog.text


def test_refuses_when_nothing_fits(tmp_path, zarr_stack, model_file, monkeypatch, capsys):
    monkeypatch.setattr(memory, "_host_available", lambda: 1000)
    assert _predict(zarr_stack, "--out", tmp_path / "o", model=model_file) == 2
    err = capsys.readouterr().err
    assert "not enough memory" in err and "MiB is free" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_tile_option_accepts_auto_and_numbers():
    from napari_fcnseg.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["predict", "a.tif", "--out", "o"]).tile is None
    assert parser.parse_args(["predict", "a.tif", "--out", "o", "--tile", "auto"]).tile is None
    assert parser.parse_args(["predict", "a.tif", "--out", "o", "--tile", "256"]).tile == 256
    assert parser.parse_args(["evaluate", "--images", "i", "--labels", "l"]).tile == 1024
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "a.tif", "--out", "o", "--tile", "big"])


@pytest.mark.slow
def test_scheduler_local_gives_the_same_labels(tmp_path, zarr_stack, model_file):
    assert _predict(zarr_stack, "--out", tmp_path / "one", "--tile", "32", model=model_file) == 0
    assert (
        _predict(
            zarr_stack,
            "--out",
            tmp_path / "many",
            "--tile",
            "32",
            "--scheduler",
            "local",
            "--workers",
            "2",
            model=model_file,
        )
        == 0
    )
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "many" / "stack_labels.tif"),
        tifffile.imread(tmp_path / "one" / "stack_labels.tif"),
    )
