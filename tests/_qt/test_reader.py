"""The plugin's file contributions in napari: an annotated set opened for review, OME-Zarr saved."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fcnseg._reader import get_reader
from napari_fcnseg.training.dataset import AnnotatedSet
from napari_fcnseg.training.samples import IGNORE_LABEL


@pytest.fixture
def set_folder(tmp_path, rng):
    annotated = AnnotatedSet.create(tmp_path / "set", ["background", "egg"])
    for i in range(2):
        image = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
        labels = np.zeros((40, 50), np.uint8)
        labels[10:30, 10 + i : 30 + i] = 1
        labels[0:3] = IGNORE_LABEL
        corrected = np.zeros((40, 50), bool)
        corrected[10:20, 10:20] = True
        annotated.add_item(image, labels, corrected if i == 0 else None, name=f"scan{i}")
    return tmp_path / "set"


def test_only_set_folders_are_claimed(tmp_path, set_folder):
    assert get_reader(str(set_folder)) is not None
    assert get_reader(str(tmp_path)) is None  # a folder without a set
    (tmp_path / "x.tif").write_bytes(b"")
    assert get_reader(str(tmp_path / "x.tif")) is None
    assert get_reader([str(set_folder), str(set_folder)]) is None


def test_a_set_opens_for_review(viewer, set_folder):
    viewer.open(str(set_folder), plugin="napari-fcnseg")
    names = [layer.name for layer in viewer.layers]
    assert names == ["scan0", "scan0 labels", "scan0 corrected", "scan1", "scan1 labels"]
    labels = viewer.layers["scan0 labels"]
    assert labels.visible and not viewer.layers["scan1 labels"].visible
    assert viewer.layers["scan0"].rgb
    # class colours: egg visible, background and "not annotated" transparent; names on hover
    assert labels.colormap.map(1)[3] > 0
    assert labels.colormap.map(0)[3] == 0 and labels.colormap.map(IGNORE_LABEL)[3] == 0
    assert list(labels.features["class"]) == ["background", "egg", "not annotated"]
    assert viewer.layers["scan0 corrected"].opacity < labels.opacity
    np.testing.assert_array_equal(viewer.layers["scan0 corrected"].data[10:20, 10:20], 1)


def test_save_layer_offers_ome_zarr(viewer, tmp_path):
    labels = np.zeros((30, 40), np.uint8)
    labels[5:15, 5:20] = 1
    layer = viewer.add_labels(labels, name="mask", scale=(0.5, 0.5))
    [written] = viewer.layers.save(
        str(tmp_path / "mask.ome.zarr"), selected=False, plugin="napari-fcnseg"
    )
    from napari_fcnseg.io.ome_zarr import read_ome_zarr_labels

    array, _ = read_ome_zarr_labels(written)
    np.testing.assert_array_equal(np.asarray(array), layer.data)
