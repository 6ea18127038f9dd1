from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage import io as skio

from napari_fcnseg.errors import InputError
from napari_fcnseg.io.images import read_image


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_2d_round_trip(tmp_path, rng, dtype):
    data = (rng.random((33, 47)) * 200).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", data)
    image = read_image(tmp_path / "a.tif")
    assert image.layout.axes == "YX"
    np.testing.assert_array_equal(image.data, data)
    assert image.data.dtype == dtype


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_imagej_stack(tmp_path, rng, dtype):
    data = (rng.random((5, 20, 30)) * 200).astype(dtype)
    tifffile.imwrite(
        tmp_path / "s.tif", data, imagej=True, metadata={"axes": "ZYX", "spacing": 2.5}
    )
    image = read_image(tmp_path / "s.tif")
    assert image.layout.axes == "ZYX"
    assert image.spacing == (2.5, 1.0, 1.0)
    np.testing.assert_array_equal(image.data, data)


def test_tiff_rgb(tmp_path, rng):
    data = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", data, photometric="rgb")
    image = read_image(tmp_path / "rgb.tif")
    assert image.layout.axes == "YXC"
    np.testing.assert_array_equal(image.data, data)


def test_tiff_imagej_multichannel_stack(tmp_path, rng):
    data = (rng.random((4, 2, 20, 30)) * 4000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "zc.tif", data, imagej=True, metadata={"axes": "ZCYX"})
    image = read_image(tmp_path / "zc.tif")
    assert image.layout.axes == "ZCYX"
    assert image.layout.spatial_shape(image.data.shape) == (4, 20, 30)


def test_ome_tiff_axes(tmp_path, rng):
    data = (rng.random((3, 2, 16, 24)) * 4000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "x.ome.tif", data, ome=True, metadata={"axes": "CZYX"})
    image = read_image(tmp_path / "x.ome.tif")
    assert image.layout.axes == "CZYX"
    assert image.layout.spatial_shape(image.data.shape) == (2, 16, 24)


def test_tiff_without_axes_metadata_is_inferred(tmp_path, rng):
    data = (rng.random((6, 20, 30)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", data, metadata=None, photometric="minisblack")
    assert read_image(tmp_path / "plain.tif").layout.axes == "ZYX"


def test_tiff_time_series_is_refused_with_advice(tmp_path, rng):
    data = (rng.random((3, 4, 20, 30)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "t.tif", data, imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(InputError, match="time point"):
        read_image(tmp_path / "t.tif")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_png_jpeg_rgb(tmp_path, rng, suffix):
    data = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    skio.imsave(tmp_path / f"a{suffix}", data, check_contrast=False)
    image = read_image(tmp_path / f"a{suffix}")
    assert image.layout.axes == "YXC"
    assert image.data.shape == (20, 30, 3)
    if suffix == ".png":
        np.testing.assert_array_equal(image.data, data)


def test_png_grey_and_rgba(tmp_path, rng):
    grey = (rng.random((20, 30)) * 255).astype(np.uint8)
    skio.imsave(tmp_path / "g.png", grey, check_contrast=False)
    assert read_image(tmp_path / "g.png").layout.axes == "YX"
    rgba = (rng.random((20, 30, 4)) * 255).astype(np.uint8)
    skio.imsave(tmp_path / "rgba.png", rgba, check_contrast=False)
    image = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(image.data, rgba[..., :3])


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.tif")


def test_corrupt_tiff(tmp_path, rng):
    path = tmp_path / "broken.tif"
    tifffile.imwrite(path, (rng.random((64, 64)) * 255).astype(np.uint8))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match="not a readable TIFF"):
        read_image(path)


def test_corrupt_png(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(InputError, match="cannot decode"):
        read_image(path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "a.czi"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(path)


def test_axes_override(tmp_path, rng):
    data = (rng.random((3, 20, 30)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", data, metadata=None, photometric="minisblack")
    assert read_image(tmp_path / "c.tif", axes="CYX").layout.axes == "CYX"
