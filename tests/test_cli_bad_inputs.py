"""Bad images, labels and models: one line saying what to do, exit 2, nothing on disk changed."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage import io as skio

from napari_fcnseg.cli import main
from napari_fcnseg.io.labels import write_labels
from napari_fcnseg.model.checkpoint import FORMAT_VERSION, METADATA_KEY, save_model
from tests.helpers import huge_jpeg, huge_png, make_tiny_model


def huge_tiff(path: Path, side: int = 200_000) -> None:
    """A 16x16 TIFF whose tags are patched to declare ``side`` x ``side`` pixels."""
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(side)
        tif.pages[0].tags["ImageLength"].overwrite(side)


def _write_quietly(path: Path, data: np.ndarray, **kwargs) -> None:
    with warnings.catch_warnings():  # tifffile warns about some of these odd files
        warnings.simplefilter("ignore")
        tifffile.imwrite(path, data, **kwargs)


def _cut(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _make_bad_image(kind: str, path_base: Path) -> tuple[Path, str]:
    """Write a bad input of ``kind``; return it and a phrase the error must contain."""
    rng = np.random.default_rng(0)
    rgb = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
    if kind == "truncated_tiff":
        path = path_base.with_suffix(".tif")
        tifffile.imwrite(path, rgb, photometric="rgb")
        _cut(path, 0.02)
        return path, "not a readable TIFF"
    if kind in ("truncated_png", "truncated_jpeg"):
        path = path_base.with_suffix(".png" if kind == "truncated_png" else ".jpg")
        skio.imsave(path, rgb, check_contrast=False)
        _cut(path)
        return path, "truncated or corrupt"
    if kind == "corrupt_jpeg":
        path = path_base.with_suffix(".jpg")
        path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(rng.integers(0, 255, 300)))
        return path, "truncated or corrupt"
    if kind == "huge_png":
        path = path_base.with_suffix(".png")
        path.write_bytes(huge_png())
        return path, "GiB of pixels"
    if kind == "huge_jpeg":
        path = path_base.with_suffix(".jpg")
        huge_jpeg(path)
        return path, "than Pillow decodes safely"
    if kind == "huge_tiff":
        path = path_base.with_suffix(".tif")
        huge_tiff(path)
        return path, "not enough memory"
    path = path_base.with_suffix(".tif")
    data, expected = {
        "zero_size": (np.zeros((0, 16), np.uint8), "empty"),
        "nan": (np.where(np.eye(16) > 0, np.nan, 1).astype(np.float32), "NaN"),
        "inf": (np.where(np.eye(16) > 0, np.inf, 1).astype(np.float32), "infinite"),
        "complex": (np.zeros((16, 16), np.complex64), "complex64 is not supported"),
        "bool": (np.zeros((16, 16), bool), "bool is not supported"),
        "5d": (np.zeros((2, 3, 4, 16, 16), np.uint8), "--axes"),
        "time_series": (np.zeros((3, 2, 16, 16), np.uint8), "time point"),
    }[kind]
    kwargs = {"imagej": True, "metadata": {"axes": "TZYX"}} if kind == "time_series" else {}
    _write_quietly(path, data, **kwargs)
    return path, expected


BAD_IMAGES = [
    "truncated_tiff",
    "truncated_png",
    "truncated_jpeg",
    "corrupt_jpeg",
    "huge_png",
    "huge_jpeg",
    "huge_tiff",
    "zero_size",
    "nan",
    "inf",
    "complex",
    "bool",
    "5d",
    "time_series",
]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_line_error(capsys, args: list[str], expected: str) -> str:
    code = main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fcnseg: e")]
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("fcnseg: error:"), err
    assert expected in err[0], err[0]
    return err[0]


@pytest.fixture
def out_folder(tmp_path: Path) -> Path:
    """An output folder that already holds results of an earlier run."""
    out = tmp_path / "out"
    out.mkdir()
    write_labels(out / "earlier_labels.tif", np.ones((8, 8), np.uint8))
    (out / "notes.txt").write_text("mine")
    return out


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_bad_image_gives_one_line_and_changes_nothing(
    kind, tmp_path, out_folder, tiny_model_file, capsys
):
    path, expected = _make_bad_image(kind, tmp_path / kind)
    # An earlier output of this very input exists: even with --overwrite it must survive.
    write_labels(out_folder / f"{path.stem}_labels.tif", np.full((8, 8), 2, np.uint8))
    before = _snapshot(out_folder)
    args = ["predict", str(path), "--out", str(out_folder), "--model", str(tiny_model_file)]
    line = _one_line_error(capsys, [*args, "--device", "cpu", "--overwrite"], expected)
    assert str(path) in line  # the error names the file
    assert _snapshot(out_folder) == before


def test_one_pixel_images_are_segmented(tmp_path, tiny_model_file):
    skio.imsave(tmp_path / "grey.png", np.array([[7]], np.uint8), check_contrast=False)
    skio.imsave(tmp_path / "rgb.png", np.full((1, 1, 3), 9, np.uint8), check_contrast=False)
    tifffile.imwrite(tmp_path / "float.tif", np.array([[0.5]], np.float32))
    inputs = [str(tmp_path / n) for n in ("grey.png", "rgb.png", "float.tif")]
    out = tmp_path / "out"
    args = ["predict", *inputs, "--out", str(out), "--model", str(tiny_model_file)]
    assert main([*args, "--device", "cpu"]) == 0
    for name in ("grey", "rgb", "float"):
        assert tifffile.imread(out / f"{name}_labels.tif").shape == (1, 1)


def _model_variant(kind: str, folder: Path) -> tuple[Path, str]:
    good = save_model(make_tiny_model(), folder / f"{kind}.safetensors")
    data = good.read_bytes()
    if kind == "truncated":
        good.write_bytes(data[: len(data) // 2])
        return good, "truncated or corrupt"
    if kind == "garbage":
        good.write_bytes(bytes(np.random.default_rng(1).integers(0, 255, 2000, dtype=np.uint8)))
        return good, "not a safetensors model file"
    if kind == "corrupt_header":
        header_end = 8 + int.from_bytes(data[:8], "little")
        good.write_bytes(data[:8] + b"\x00" * (header_end - 8) + data[header_end:])
        return good, "corrupt"
    if kind == "newer_format":
        from safetensors.torch import load_file, save_file

        info = json.loads(json.loads(_header(data))["__metadata__"][METADATA_KEY])
        info["format_version"] = FORMAT_VERSION + 1
        save_file(load_file(str(good)), str(good), metadata={METADATA_KEY: json.dumps(info)})
        return good, "upgrade napari-fcnseg"
    if kind == "pickle_payload":  # would create ran.txt if it were ever unpickled
        import pickle

        marker = folder / "ran.txt"

        class Payload:
            def __reduce__(self):
                return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

        good.write_bytes(pickle.dumps(Payload()))
        return good, "refuses pickles"
    if kind == "pickle":
        import torch

        path = folder / "model.pt"
        torch.save(make_tiny_model().state_dict(), path)
        return path, "pickle"
    if kind == "wrong_channels":
        good.unlink()
        return save_model(make_tiny_model(in_channels=2), good), "model expects 2"
    raise AssertionError(kind)


def _header(data: bytes) -> str:
    return data[8 : 8 + int.from_bytes(data[:8], "little")].decode()


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "garbage",
        "corrupt_header",
        "newer_format",
        "pickle",
        "pickle_payload",
        "wrong_channels",
    ],
)
def test_bad_model_gives_one_line_and_changes_nothing(kind, tmp_path, out_folder, capsys):
    model, expected = _model_variant(kind, tmp_path)
    image = tmp_path / "scan.png"
    skio.imsave(image, np.zeros((32, 32, 3), np.uint8), check_contrast=False)
    before = _snapshot(out_folder)
    args = ["predict", str(image), "--out", str(out_folder), "--model", str(model)]
    line = _one_line_error(capsys, [*args, "--device", "cpu"], expected)
    assert kind == "wrong_channels" or str(model) in line
    assert _snapshot(out_folder) == before
    assert not (tmp_path / "ran.txt").exists()  # no code from a model file ever runs


def test_evaluate_with_labels_of_another_size(tmp_path, tiny_model_file, capsys):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    skio.imsave(images / "a.png", np.zeros((32, 40, 3), np.uint8), check_contrast=False)
    write_labels(labels / "a.tif", np.zeros((32, 32), np.uint8))
    args = ["evaluate", "--model", str(tiny_model_file), "--images", str(images)]
    line = _one_line_error(capsys, [*args, "--labels", str(labels)], "is shaped (32, 32)")
    assert "a.png has spatial shape (32, 40)" in line


def test_add_with_labels_of_another_size_changes_nothing(tmp_path, capsys):
    image, small = tmp_path / "a.png", tmp_path / "a_labels.png"
    skio.imsave(image, np.zeros((32, 40, 3), np.uint8), check_contrast=False)
    skio.imsave(small, np.zeros((32, 32), np.uint8), check_contrast=False)
    base = ["add", "--set", str(tmp_path / "set"), "--image", str(image)]
    good = tmp_path / "good.png"
    skio.imsave(good, np.ones((32, 40), np.uint8), check_contrast=False)
    assert main([*base, "--labels", str(good), "--class-names", "background,egg"]) == 0
    capsys.readouterr()
    before = _snapshot(tmp_path / "set")
    _one_line_error(capsys, [*base, "--labels", str(small)], "must match")
    assert _snapshot(tmp_path / "set") == before
