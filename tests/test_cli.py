from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tifffile
from skimage import io as skio

from napari_fcnseg.cli import main
from napari_fcnseg.io.labels import write_labels
from tests.helpers import make_tiny_model, touching_discs


@pytest.fixture
def rgb_jpeg(tmp_path, rng):
    path = tmp_path / "in" / "scan.jpg"
    path.parent.mkdir()
    skio.imsave(path, (rng.random((70, 90, 3)) * 255).astype(np.uint8), check_contrast=False)
    return path


@pytest.fixture
def tiff_stack(tmp_path, rng):
    path = tmp_path / "in" / "stack.tif"
    path.parent.mkdir(exist_ok=True)
    data = (rng.random((4, 50, 60, 3)) * 4000).astype(np.uint16)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYXS"})
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_fcnseg", *args], capture_output=True, text=True, timeout=120
    )


def test_predict_rgb_jpeg_and_stack(tmp_path, rgb_jpeg, tiff_stack, tiny_model_file):
    out = tmp_path / "out"
    result = _run(
        "predict",
        str(rgb_jpeg),
        str(tiff_stack),
        "--out",
        str(out),
        "--model",
        str(tiny_model_file),
        "--device",
        "cpu",
        "--tile",
        "32",
    )
    assert result.returncode == 0, result.stderr
    labels2d = tifffile.imread(out / "scan_labels.tif")
    stack = tifffile.imread(out / "stack_labels.tif")
    assert labels2d.shape == (70, 90) and labels2d.dtype == np.uint8
    assert stack.shape == (4, 50, 60) and stack.dtype == np.uint8
    assert set(np.unique(stack)) <= {0, 1}
    assert "%" in result.stderr  # tqdm progress bar on stderr
    assert result.stdout == ""


def test_existing_output_needs_overwrite(tmp_path, rgb_jpeg, tiny_model_file, capsys):
    out = tmp_path / "out"
    args = ["predict", str(rgb_jpeg), "--out", str(out), "--model", str(tiny_model_file)]
    assert main(args) == 0
    before = (out / "scan_labels.tif").read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "scan_labels.tif").read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


def test_predict_uncertainty_beside_the_labels(
    tmp_path, rgb_jpeg, tiff_stack, tiny_model_file, capsys
):
    from napari_fcnseg.core.predict import predict_probabilities
    from napari_fcnseg.core.progress import run_to_completion
    from napari_fcnseg.core.uncertainty import entropy_uncertainty
    from napari_fcnseg.model.checkpoint import load_model

    out = tmp_path / "out"
    common = ["--model", str(tiny_model_file), "--device", "cpu", "--tile", "64"]
    args = ["predict", str(rgb_jpeg), str(tiff_stack), "--out", str(out), "--uncertainty"]
    assert main([*args, *common]) == 0
    flat = tifffile.imread(out / "scan_uncertainty.tif")
    stack = tifffile.imread(out / "stack_uncertainty.tif")
    assert flat.shape == (70, 90) and flat.dtype == np.float32
    assert stack.shape == (4, 50, 60) and stack.dtype == np.float32
    assert 0.0 <= stack.min() and stack.max() <= 1.0
    probs = run_to_completion(
        predict_probabilities(load_model(tiny_model_file), skio.imread(rgb_jpeg), tile=64)
    )
    np.testing.assert_allclose(flat, entropy_uncertainty(probs), atol=1e-5)
    # never replaced without --overwrite, and the labels are not written either
    before = (out / "scan_uncertainty.tif").read_bytes()
    (out / "scan_labels.tif").unlink()
    assert main([*args[:2], "--out", str(out), "--uncertainty", *common]) == 2
    assert "scan_uncertainty.tif" in capsys.readouterr().err
    assert not (out / "scan_labels.tif").exists()
    assert (out / "scan_uncertainty.tif").read_bytes() == before
    # not on a cluster: said before anything starts
    assert main([*args, "--scheduler", "local", *common]) == 2
    assert "--uncertainty is written by a single process" in capsys.readouterr().err


def test_predict_instances_and_table(tmp_path, tiny_model_file, capsys, monkeypatch):
    """Objects are split from the labels; the table has one row per object with its slice."""
    import csv

    from napari_fcnseg.core import instances as inst

    mask, _, _ = touching_discs()
    image = np.zeros((2, *mask.shape, 3), np.uint8)
    image[..., 0] = 180 * mask
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, image, imagej=True, metadata={"axes": "ZYXS"})
    # The tiny model is untrained: make "its" labels the known mask, so the split is tested.
    from napari_fcnseg.core import slices

    real = slices.label_slices

    def known_labels(*args, **kwargs):
        for event in real(*args, **kwargs):
            if isinstance(event, slices.SliceLabels):
                event.labels = mask.astype(np.uint8)
            yield event

    monkeypatch.setattr(slices, "label_slices", known_labels)
    out = tmp_path / "out"
    args = ["predict", str(path), "--out", str(out), "--model", str(tiny_model_file)]
    assert main([*args, "--instances", "--table", "--device", "cpu"]) == 0
    objects = tifffile.imread(out / "two_instances.tif")
    assert objects.shape == (2, *mask.shape) and objects.dtype == np.uint16
    np.testing.assert_array_equal(objects[0], inst.split_instances(mask))
    assert set(np.unique(objects[1])) == {0, 4, 5, 6}  # numbered on through the stack
    with (out / "two_objects.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["label"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [int(r["z"]) for r in rows] == [0, 0, 0, 1, 1, 1]
    assert {"area_px", "centroid_y", "eccentricity", "touches_border", "mean_intensity_0"} <= set(
        rows[0]
    )
    assert [r["touches_border"] for r in rows[:3]] == ["False", "False", "True"]
    assert abs(float(rows[0]["mean_intensity_0"]) - 180) < 1e-6
    assert main([*args, "--table"]) == 2
    assert "add --instances" in capsys.readouterr().err


def _one_line_error(capsys, args, expected):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("fcnseg: error:"), err
    assert expected in err[0]
    assert "Traceback" not in err[0]


def test_error_missing_file(tmp_path, tiny_model_file, capsys):
    _one_line_error(
        capsys,
        [
            "predict",
            str(tmp_path / "none.tif"),
            "--out",
            str(tmp_path),
            "--model",
            str(tiny_model_file),
        ],
        "no such file",
    )


def test_error_corrupt_tiff(tmp_path, tiny_model_file, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 20)
    _one_line_error(
        capsys,
        ["predict", str(bad), "--out", str(tmp_path / "o"), "--model", str(tiny_model_file)],
        "not a readable TIFF",
    )
    assert not (tmp_path / "o" / "bad_labels.tif").exists()


def test_error_empty_array(tmp_path, tiny_model_file, capsys):
    path = tmp_path / "empty.tif"
    with warnings.catch_warnings():  # tifffile warns that the file it writes is nonconformant
        warnings.simplefilter("ignore")
        tifffile.imwrite(path, np.zeros((0, 10), np.uint8))
    _one_line_error(
        capsys,
        ["predict", str(path), "--out", str(tmp_path / "o"), "--model", str(tiny_model_file)],
        "empty",
    )


def test_error_nan(tmp_path, tiny_model_file, capsys):
    path = tmp_path / "nan.tif"
    data = np.ones((32, 32), np.float32)
    data[1, 1] = np.nan
    tifffile.imwrite(path, data)
    _one_line_error(
        capsys,
        ["predict", str(path), "--out", str(tmp_path / "o"), "--model", str(tiny_model_file)],
        "NaN",
    )
    assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


def test_error_ambiguous_axes(tmp_path, tiny_model_file, capsys):
    path = tmp_path / "4d.tif"
    tifffile.imwrite(path, np.zeros((5, 6, 32, 32), np.uint8))  # shape kept, axes unnamed
    _one_line_error(
        capsys,
        ["predict", str(path), "--out", str(tmp_path / "o"), "--model", str(tiny_model_file)],
        "--axes",
    )


def test_error_channel_mismatch(tmp_path, tiny_model_file, capsys):
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, np.zeros((2, 32, 32), np.uint8), imagej=True, metadata={"axes": "CYX"})
    _one_line_error(
        capsys,
        ["predict", str(path), "--out", str(tmp_path / "o"), "--model", str(tiny_model_file)],
        "model expects 3",
    )


def test_error_pickled_model(tmp_path, rgb_jpeg, capsys):
    import torch

    model = tmp_path / "m.pt"
    torch.save({"a": torch.zeros(2)}, model)
    _one_line_error(
        capsys,
        ["predict", str(rgb_jpeg), "--out", str(tmp_path / "o"), "--model", str(model)],
        "pickle",
    )


def test_model_required_without_bundled_default(tmp_path, rgb_jpeg, capsys, monkeypatch):
    import napari_fcnseg.model.default as default

    monkeypatch.setattr(default, "default_model_path", lambda: None)
    _one_line_error(
        capsys, ["predict", str(rgb_jpeg), "--out", str(tmp_path / "o")], "--model PATH"
    )


def test_unknown_device_is_a_usage_error(tmp_path, rgb_jpeg):
    result = _run("predict", str(rgb_jpeg), "--out", str(tmp_path), "--device", "tpu")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_evaluate(tmp_path, rng, capsys):
    model = make_tiny_model(in_channels=1)
    from napari_fcnseg.model.checkpoint import save_model

    model_path = save_model(model, tmp_path / "m.safetensors")
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(images / f"{name}.tif", (rng.random((40, 40)) * 255).astype(np.uint8))
        write_labels(labels / f"{name}.tif", rng.integers(0, 2, (40, 40)).astype(np.uint8))
    args = [
        "evaluate",
        "--model",
        str(model_path),
        "--images",
        str(images),
        "--labels",
        str(labels),
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "a.tif" in table and "mean" in table and "Dice" in table
    assert main([*args, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in scores["images"]] == ["a.tif", "b.tif"]
    assert 0 <= scores["mean"]["iou"] <= 1
    mean_iou = np.mean([r["iou"] for r in scores["images"]])
    assert scores["mean"]["iou"] == pytest.approx(mean_iou)


def test_evaluate_missing_labels(tmp_path, rng, tiny_model_file, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(
        tmp_path / "images" / "a.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb"
    )
    _one_line_error(
        capsys,
        [
            "evaluate",
            "--model",
            str(tiny_model_file),
            "--images",
            str(tmp_path / "images"),
            "--labels",
            str(tmp_path / "labels"),
        ],
        "no labels for a.tif",
    )


def test_predict_with_crf(tmp_path, rng):
    import torch
    from scipy import ndimage as ndi
    from skimage.measure import label

    # Smooth structures (what the bilateral kernel follows) plus pixel noise (the speckle).
    smooth = ndi.gaussian_filter(rng.random((4, 50, 60, 3)), (0, 4, 4, 0))
    smooth = (smooth - smooth.min()) / np.ptp(smooth)
    data = (3000 * smooth + rng.normal(0, 60, smooth.shape) + 500).astype(np.uint16)
    tiff_stack = tmp_path / "in" / "stack.tif"
    tiff_stack.parent.mkdir()
    tifffile.imwrite(tiff_stack, data, imagej=True, metadata={"axes": "ZYXS"})

    from napari_fcnseg.core.predict import predict_probabilities
    from napari_fcnseg.core.progress import run_to_completion
    from napari_fcnseg.model.checkpoint import save_model

    model = make_tiny_model()
    with torch.no_grad():  # a speckled, over-confident prediction for the CRF to clean
        model.unet.head.weight.mul_(30)
        probs = run_to_completion(
            predict_probabilities(model, tifffile.imread(tiff_stack)[0], device="cpu")
        )
        model.unet.head.bias[1] -= float(np.median(np.log(probs[1] / probs[0])))
    model_file = save_model(model, tmp_path / "speckle.safetensors")
    out = tmp_path / "out"
    args = ["predict", str(tiff_stack), "--model", str(model_file), "--device", "cpu"]
    assert main([*args, "--out", str(out / "plain")]) == 0
    assert main([*args, "--out", str(out / "crf"), "--crf", "--crf-iterations", "3"]) == 0
    plain = tifffile.imread(out / "plain" / "stack_labels.tif")
    refined = tifffile.imread(out / "crf" / "stack_labels.tif")
    assert refined.shape == plain.shape == (4, 50, 60)
    assert refined.dtype == np.uint8
    assert len(np.unique(plain)) == 2

    def specks(labels):
        return sum(label(s == c, connectivity=1).max() for s in labels for c in (0, 1))

    assert specks(refined) < specks(plain) / 2  # the CRF cleans the speckle


def test_evaluate_against_labels_with_more_classes(tmp_path, rng, capsys):
    from napari_fcnseg.model.checkpoint import save_model

    model_path = save_model(make_tiny_model(in_channels=1), tmp_path / "m.safetensors")
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    tifffile.imwrite(images / "a.tif", (rng.random((40, 40)) * 255).astype(np.uint8))
    write_labels(labels / "a.tif", rng.integers(0, 4, (40, 40)).astype(np.uint8))
    args = [
        "evaluate",
        "--model",
        str(model_path),
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--json",
    ]
    assert main(args) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["images"][0]["class_iou"] is None
    assert 0 <= scores["images"][0]["iou"] <= 1


def test_predict_with_a_model_at_half_scale(tmp_path, rgb_jpeg, tiff_stack):
    from napari_fcnseg.model.checkpoint import save_model

    model = make_tiny_model()
    model.info.scale = 0.5
    model_file = save_model(model, tmp_path / "half.safetensors")
    out = tmp_path / "out"
    args = ["predict", str(rgb_jpeg), str(tiff_stack), "--model", str(model_file)]
    assert main([*args, "--device", "cpu", "--out", str(out), "--crf", "--tile", "32"]) == 0
    # Labels (and the CRF) come back at the images' own size.
    assert tifffile.imread(out / "scan_labels.tif").shape == (70, 90)
    assert tifffile.imread(out / "stack_labels.tif").shape == (4, 50, 60)


def test_predict_and_evaluate_fill_holes_as_the_model_says_unless_told(
    tmp_path, trained_tiny_model, capsys
):
    from napari_fcnseg.io.labels import read_labels
    from napari_fcnseg.model.checkpoint import save_model
    from tests.helpers import ring

    image, hole = ring()
    images = tmp_path / "images"
    images.mkdir()
    skio.imsave(images / "ring.png", image, check_contrast=False)
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 32) ** 2 + (xx - 32) ** 2 < (64 // 3) ** 2  # the ring with its inside
    write_labels(tmp_path / "truth" / "ring.tif", disk.astype(np.uint8))
    model = copy.deepcopy(trained_tiny_model)
    model.info.fill_holes = True
    path = str(save_model(model, tmp_path / "solid.safetensors"))
    results = {}
    for flag in ([], ["--no-fill-holes"]):
        out = tmp_path / ("plain" if flag else "filled")
        assert (
            main(["predict", str(images / "ring.png"), "--model", path, "--out", str(out), *flag])
            == 0
        )
        results[bool(flag)] = read_labels(out / "ring_labels.tif")
    assert (results[False][hole] == 1).all() and (results[True][hole] == 0).all()
    capsys.readouterr()
    scores = {}
    for flag in ([], ["--no-fill-holes"]):
        args = [
            "evaluate",
            "--model",
            path,
            "--images",
            str(images),
            "--labels",
            str(tmp_path / "truth"),
        ]
        assert main([*args, *flag, "--json"]) == 0
        scores[bool(flag)] = json.loads(capsys.readouterr().out)["mean"]["iou"]
    assert scores[False] > scores[True]  # evaluate scores the labels predict writes
