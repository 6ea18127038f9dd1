"""``fcnseg suggest``: the slices and scans to correct first, as text or JSON."""

from __future__ import annotations

import json

import pytest
import tifffile
from skimage import io as skio

from napari_fcnseg.cli import main
from napari_fcnseg.core.suggest import DEFAULT_MEASURE
from napari_fcnseg.model.checkpoint import save_model
from tests.helpers import disks, hard_disks_stack


@pytest.fixture
def scans(tmp_path):
    """A folder with a 4-slice stack (slice 2 made hard) and a 2D scan."""
    folder = tmp_path / "scans"
    folder.mkdir()
    tifffile.imwrite(folder / "stack.tif", hard_disks_stack(hard=2), imagej=True,
                     metadata={"axes": "ZYXS"})  # fmt: skip
    skio.imsave(folder / "flat.png", disks(5).image, check_contrast=False)
    return folder


@pytest.fixture
def model_args(tmp_path, trained_tiny_model):
    path = save_model(trained_tiny_model, tmp_path / "disks.safetensors")
    return ["--model", str(path), "--device", "cpu", "--tile", "64"]


def test_text_lists_the_slices_to_correct_first(scans, model_args, capsys):
    assert main(["suggest", str(scans), *model_args, "--top", "3"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "input", "slice", DEFAULT_MEASURE]
    assert len(lines) == 4  # --top 3
    first = lines[1].split()
    assert first[:3] == ["1", str(scans / "stack.tif"), "2"]
    assert 0.0 < float(first[3]) <= 1.0
    assert "slice" in err  # the progress bar


def test_json_has_every_slice_in_rank_order(scans, model_args, capsys):
    # entropy: a measure that flags the hard slice whatever the thread count the tiny model
    # was trained with (crf does not, see tests/core/test_suggest.py)
    assert main(["suggest", str(scans), *model_args, "--json", "--measure", "entropy"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["measure"] == "entropy"
    rows = report["suggestions"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert (rows[0]["input"], rows[0]["slice"]) == (str(scans / "stack.tif"), 2)
    flat = next(r for r in rows if r["input"].endswith("flat.png"))
    assert flat["slice"] is None and flat["region"] is None
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_exclude_and_region(scans, model_args, capsys):
    stack = scans / "stack.tif"
    args = ["suggest", str(stack), *model_args, "--json", "--region", "32"]
    assert main([*args, "--exclude", "stack.tif:2", "--exclude", f"{stack}:0"]) == 0
    rows = json.loads(capsys.readouterr().out)["suggestions"]
    assert sorted(r["slice"] for r in rows) == [1, 3]
    assert all(len(r["region"]["bbox"]) == 4 for r in rows)
    assert main(["suggest", str(stack), *model_args, "--region", "32", "--top", "1"]) == 0
    assert "worst 32 px square" in capsys.readouterr().out
    assert main(["suggest", str(stack), *model_args, "--exclude", "stack.tif"]) == 0
    assert "all were excluded" in capsys.readouterr().out


def test_bad_inputs_say_what_to_do(scans, model_args, capsys):
    assert main(["suggest", str(scans / "none.tif"), *model_args]) == 2
    assert "none.tif: no such file; check the path" in capsys.readouterr().err
    assert main(["suggest", str(scans), *model_args, "--exclude", "other.tif"]) == 2
    assert "no input is named 'other.tif'" in capsys.readouterr().err
    assert main(["suggest", str(scans), *model_args, "--region", "8"]) == 2
    assert "at least 16 px" in capsys.readouterr().err
