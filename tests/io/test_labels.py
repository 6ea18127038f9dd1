from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_fcnseg.errors import InputError, OutputExistsError
from napari_fcnseg.io.labels import labels_dtype, read_labels, write_label_pages, write_labels


@pytest.mark.parametrize("shape", [(20, 30), (4, 20, 30)])
def test_round_trip_is_compressed(tmp_path, rng, shape):
    labels = rng.integers(0, 4, shape).astype(np.uint8)
    path = write_labels(tmp_path / "l.tif", labels)
    np.testing.assert_array_equal(read_labels(path), labels)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression != 1
        assert tif.series[0].axes == ("ZYX" if len(shape) == 3 else "YX")


def test_dtype_follows_class_count():
    assert labels_dtype(2) == np.uint8
    assert labels_dtype(256) == np.uint8
    assert labels_dtype(257) == np.uint16


def test_uint16_labels(tmp_path):
    labels = np.arange(600, dtype=np.uint16).reshape(20, 30)
    np.testing.assert_array_equal(read_labels(write_labels(tmp_path / "l.tif", labels)), labels)


def test_no_overwrite_without_asking(tmp_path):
    path = tmp_path / "l.tif"
    write_labels(path, np.ones((8, 8), np.uint8))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_labels(path, np.zeros((8, 8), np.uint8))
    assert path.read_bytes() == before
    write_labels(path, np.zeros((8, 8), np.uint8), overwrite=True)
    assert read_labels(path).max() == 0


def test_failure_mid_write_leaves_nothing(tmp_path):
    def pages():
        yield np.ones((8, 8), np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_label_pages(tmp_path / "l.tif", pages(), shape=(3, 8, 8), dtype=np.uint8)
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_file(tmp_path):
    path = write_labels(tmp_path / "l.tif", np.full((8, 8), 2, np.uint8))

    def pages():
        raise RuntimeError("boom")
        yield

    with pytest.raises(RuntimeError):
        write_label_pages(path, pages(), shape=(8, 8), dtype=np.uint8, overwrite=True)
    assert read_labels(path).max() == 2
    assert [p.name for p in tmp_path.iterdir()] == ["l.tif"]


def test_colour_png_is_not_labels(tmp_path, rng):
    from skimage import io as skio

    skio.imsave(
        tmp_path / "c.png", (rng.random((8, 8, 3)) * 255).astype(np.uint8), check_contrast=False
    )
    with pytest.raises(InputError, match="colour"):
        read_labels(tmp_path / "c.png")


def test_written_files_get_the_usual_permissions(tmp_path, tiny_model):
    import os

    from napari_fcnseg.model.checkpoint import save_model

    mask = os.umask(0o022)
    try:
        labels = write_labels(tmp_path / "l.tif", np.zeros((4, 4), np.uint8))
        model = save_model(tiny_model, tmp_path / "m.safetensors")
    finally:
        os.umask(mask)
    assert labels.stat().st_mode & 0o777 == 0o644
    assert model.stat().st_mode & 0o777 == 0o644
