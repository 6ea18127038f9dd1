"""Pixel size kept in the TIFFs we write: from a layer's scale, or from the scan's own file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_fcnseg._writer import write_labels_layer
from napari_fcnseg.cli import main
from napari_fcnseg.errors import InputError
from napari_fcnseg.io.calibration import checked_spacing, tiff_spacing
from napari_fcnseg.io.images import read_image
from napari_fcnseg.io.labels import write_labels
from napari_fcnseg.io.pages import page_writer


def _calibration(path):
    with tifffile.TiffFile(path) as tif:
        return tiff_spacing(tif)


def test_a_layer_with_scale_is_saved_with_that_spacing(tmp_path):
    labels = np.zeros((4, 30, 40), np.uint8)
    labels[1, 5:9, 6:12] = 1
    path = tmp_path / "labels.tif"
    write_labels_layer(str(path), labels, {"scale": (4.0, 0.5, 0.5), "units": ("micron",) * 3})
    with tifffile.TiffFile(path) as tif:  # what Fiji and tifffile read
        assert tif.imagej_metadata["spacing"] == 4.0
        assert tif.imagej_metadata["unit"] == "micron"
        assert tif.pages[0].tags["XResolution"].value == (2, 1)  # pixels per micron
        np.testing.assert_array_equal(tif.asarray(), labels)
    assert _calibration(path) == ((4.0, 0.5, 0.5), "micron")
    image = read_image(path)
    assert image.spacing == (4.0, 0.5, 0.5) and image.unit == "micron"


def test_class_names_and_a_2d_scale(tmp_path):
    labels = np.eye(16, dtype=np.uint8)
    path = write_labels(
        tmp_path / "flat.tif", labels, class_names=["background", "egg"], spacing=(0.3, 0.2)
    )
    with tifffile.TiffFile(path) as tif:
        assert "egg" in tif.imagej_metadata["Properties"]["class_names"]
    spacing, unit = _calibration(path)
    assert spacing == pytest.approx((1.0, 0.3, 0.2)) and unit is None


def test_without_a_scale_the_file_has_no_calibration(tmp_path):
    path = write_labels(tmp_path / "plain.tif", np.ones((8, 8), np.uint8), class_names=["a", "b"])
    assert _calibration(path) is None
    path = write_labels(tmp_path / "ones.tif", np.ones((2, 8, 8), np.uint8), spacing=(1, 1, 1))
    assert _calibration(path) is None


def test_pages_written_one_by_one_keep_the_spacing(tmp_path):
    path = tmp_path / "unsure.tif"
    with page_writer(path, shape=(3, 10, 12), spacing=(2.5, 0.4, 0.4), unit="um") as write:
        for _ in range(3):
            write(np.full((10, 12), 0.5, np.float32))
    spacing, unit = _calibration(path)
    assert spacing == pytest.approx((2.5, 0.4, 0.4)) and unit == "um"
    assert tifffile.imread(path).shape == (3, 10, 12)


def test_a_bad_spacing_is_refused():
    with pytest.raises(InputError, match="positive"):
        checked_spacing((0.0, 1.0), 2)
    assert checked_spacing((7.0, 4.0, 0.5, 0.5), 3) == (4.0, 0.5, 0.5)  # trailing axes kept


def test_predict_keeps_the_scans_pixel_size(tmp_path, rng, tiny_model_file):
    scan = tmp_path / "in" / "stack.tif"
    scan.parent.mkdir()
    data = (rng.random((3, 40, 48, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(
        scan,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "ZYXS", "spacing": 2.0, "unit": "micron"},
    )
    out = tmp_path / "out"
    args = ["predict", str(scan), "--out", str(out), "--model", str(tiny_model_file)]
    assert main([*args, "--device", "cpu", "--tile", "64", "--uncertainty"]) == 0
    assert _calibration(out / "stack_labels.tif") == ((2.0, 0.25, 0.25), "micron")
    spacing, unit = _calibration(out / "stack_uncertainty.tif")
    assert spacing == pytest.approx((2.0, 0.25, 0.25)) and unit == "micron"


def test_a_layer_saved_as_ome_zarr_keeps_scale_and_class_names(tmp_path):
    import pandas as pd

    from napari_fcnseg._writer import write_labels_layer_ome_zarr
    from napari_fcnseg.io.ome_zarr import read_ome_zarr_labels

    labels = np.zeros((3, 32, 40), np.int32)  # napari keeps int32
    labels[1, 4:20, 5:25] = 1
    features = pd.DataFrame({"index": [0, 1], "class": ["background", "egg chamber"]})
    meta = {"scale": (4.0, 0.5, 0.5), "features": features}
    [written] = write_labels_layer_ome_zarr(str(tmp_path / "labels.ome.zarr"), labels, meta)
    array, names = read_ome_zarr_labels(written)
    assert names == ["background", "egg chamber"]
    np.testing.assert_array_equal(np.asarray(array), labels)
    (multiscale,) = json.loads((Path(written) / ".zattrs").read_text())["multiscales"]
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [4.0, 0.5, 0.5]
