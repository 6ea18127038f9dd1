from __future__ import annotations

import json

import numpy as np
import pytest

from napari_fcnseg.errors import OutputExistsError
from napari_fcnseg.io.ome_zarr import (
    OmeZarrLabelsWriter,
    level_shapes,
    read_ome_zarr_labels,
    write_ome_zarr_labels,
)

NAMES = ["background", "egg", "nurse cell"]


@pytest.fixture
def labels(rng):
    return rng.integers(0, 3, (3, 600, 70), dtype=np.uint8)


def _write(path, labels, **kwargs):
    return write_ome_zarr_labels(
        path, iter(labels), shape=labels.shape, dtype=labels.dtype, class_names=NAMES, **kwargs
    )


def test_round_trip_and_ngff_metadata(tmp_path, labels):
    out = _write(tmp_path / "x_labels.ome.zarr", labels, spacing=(2.0, 0.5, 0.5))
    array, names = read_ome_zarr_labels(out)
    np.testing.assert_array_equal(array[:], labels)
    assert names == NAMES
    attrs = json.loads((out / ".zattrs").read_text())
    (ms,) = attrs["multiscales"]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.5, 0.5]
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [2.0, 1.0, 1.0]
    label_meta = attrs["image-label"]
    assert [p["class"] for p in label_meta["properties"]] == NAMES
    assert label_meta["colors"][0] == {"label-value": 0, "rgba": [0, 0, 0, 0]}
    zarray = json.loads((out / "0" / ".zarray").read_text())
    assert zarray["chunks"] == [1, 600, 70] and zarray["dimension_separator"] == "/"
    import zarr

    level1 = zarr.open_array(str(out / "1"), mode="r")
    np.testing.assert_array_equal(level1[:], labels[:, ::2, ::2])
    assert level_shapes((3, 600, 70)) == [(3, 600, 70), (3, 300, 35)]


def test_validates_against_ngff_models(tmp_path, labels):
    models = pytest.importorskip("ome_zarr_models.v04")
    import zarr

    out = _write(tmp_path / "x.ome.zarr", labels)
    group = zarr.open_group(str(out), mode="r")
    models.ImageLabel.from_zarr(group)  # raises when the metadata break the NGFF 0.4 schema


def test_napari_ome_zarr_opens_it_as_labels(tmp_path, labels):
    reader = pytest.importorskip("napari_ome_zarr._reader")
    out = _write(tmp_path / "a" / "b" / "x.ome.zarr", labels[:, :64, :64])
    layers = reader.napari_get_reader(str(out))(str(out))
    assert len(layers) == 1
    data, meta, kind = layers[0]
    assert kind == "labels"
    np.testing.assert_array_equal(np.asarray(data[0]), labels[:, :64, :64])
    assert list(meta["properties"]["class"]) == NAMES


def test_2d_labels(tmp_path, rng):
    page = rng.integers(0, 2, (50, 60), dtype=np.uint8)
    out = write_ome_zarr_labels(
        tmp_path / "p.ome.zarr", [page], shape=page.shape, dtype=np.uint8, class_names=NAMES[:2]
    )
    array, _ = read_ome_zarr_labels(out)
    np.testing.assert_array_equal(array[:], page)


def test_no_overwrite_without_asking(tmp_path, labels):
    out = _write(tmp_path / "x.ome.zarr", labels)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        _write(out, labels[:, :, ::-1])
    np.testing.assert_array_equal(read_ome_zarr_labels(out)[0][:], labels)
    _write(out, labels[:, :, ::-1].copy(), overwrite=True)
    np.testing.assert_array_equal(read_ome_zarr_labels(out)[0][:], labels[:, :, ::-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ome.zarr"]


def test_a_failure_leaves_nothing(tmp_path, labels):
    def pages():
        yield labels[0]
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_ome_zarr_labels(
            tmp_path / "x.ome.zarr", pages(), shape=labels.shape, dtype=np.uint8, class_names=NAMES
        )
    assert list(tmp_path.iterdir()) == []


def test_destination_appearing_meanwhile_is_not_clobbered(tmp_path, labels):
    out = tmp_path / "x.ome.zarr"
    with pytest.raises(OutputExistsError, match="appeared"):
        with OmeZarrLabelsWriter(out, labels.shape, np.uint8, class_names=NAMES) as writer:
            for z, page in enumerate(labels):
                writer.write_slice(z, page)
            out.mkdir()
            (out / "precious").write_text("keep me")
    assert (out / "precious").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ome.zarr"]
