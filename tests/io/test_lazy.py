from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from napari_fcnseg.core.slices import SliceLabels, label_slices
from napari_fcnseg.errors import InputError
from napari_fcnseg.io import lazy
from napari_fcnseg.io.lazy import (
    as_lazy_array,
    full_resolution,
    image_stem,
    is_zarr_path,
    open_image,
)
from tests.helpers import make_tiny_model


@pytest.fixture
def stack(rng):
    return (rng.random((3, 40, 48)) * 4000).astype(np.uint16)


def _labels(model, data, axes=None):
    return np.stack(
        [
            e.labels
            for e in label_slices(model, data, axes=axes, tile=32, device="cpu")
            if isinstance(e, SliceLabels)
        ]
    )


def test_large_tiff_is_read_lazily_and_gives_the_eager_result(tmp_path, stack, monkeypatch):
    path = tmp_path / "big.tif"
    tifffile.imwrite(
        path, stack, imagej=True, metadata={"axes": "ZYX", "spacing": 2.5}, compression="zlib"
    )
    eager = open_image(path)
    assert isinstance(eager.data, np.ndarray)
    monkeypatch.setattr(lazy, "LAZY_TIFF_BYTES", 0)
    lazy_image = open_image(path)
    assert isinstance(lazy_image.data, da.Array)
    assert lazy_image.layout.axes == "ZYX" and lazy_image.spacing == (2.5, 1.0, 1.0)
    assert lazy_image.data.chunksize == (1, 40, 48)  # one page per chunk
    model = make_tiny_model(1)
    np.testing.assert_array_equal(
        _labels(model, lazy_image.data, "ZYX"), _labels(model, eager.data, "ZYX")
    )


def test_plain_zarr_array(tmp_path, stack):
    path = tmp_path / "plain.zarr"
    z = zarr.create_array(str(path), shape=stack.shape, chunks=(1, 40, 48), dtype=stack.dtype)
    z[:] = stack
    assert is_zarr_path(path) and image_stem(path) == "plain"
    image = open_image(path)
    assert isinstance(image.data, da.Array) and image.layout.axes == "ZYX"
    np.testing.assert_array_equal(np.asarray(image.data), stack)


def test_ome_zarr_uses_level_zero_axes_and_scale(tmp_path, stack):
    path = tmp_path / "img.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=stack[None], chunks=(1, 1, 40, 48))
    group.create_array("1", data=stack[None, :, ::2, ::2], chunks=(1, 1, 20, 24))
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "c", "type": "channel"},
                {"name": "z", "type": "space"},
                {"name": "y", "type": "space"},
                {"name": "x", "type": "space"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [1, 3, 0.5, 0.5]}],
                },
                {
                    "path": "1",
                    "coordinateTransformations": [{"type": "scale", "scale": [1, 3, 1, 1]}],
                },
            ],
        }
    ]
    image = open_image(path)
    assert image.layout.axes == "CZYX"
    assert image.data.shape == (1, 3, 40, 48)
    assert image.spacing == (3.0, 0.5, 0.5)
    assert image_stem(path) == "img"


def test_zarr_group_without_multiscales_is_refused(tmp_path):
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(InputError, match="multiscales"):
        open_image(tmp_path / "g.zarr")
    with pytest.raises(InputError, match="not a zarr store"):
        open_image(tmp_path)


def test_dask_and_zarr_arrays_give_the_numpy_result(stack):
    model = make_tiny_model(1)
    expected = _labels(model, stack)
    in_memory = zarr.create_array(
        zarr.storage.MemoryStore(), shape=stack.shape, chunks=(1, 20, 48), dtype=stack.dtype
    )
    in_memory[:] = stack
    wrapped = as_lazy_array(in_memory)
    assert isinstance(wrapped, da.Array)
    np.testing.assert_array_equal(_labels(model, wrapped), expected)
    np.testing.assert_array_equal(
        _labels(model, da.from_array(stack, chunks=(1, 40, 48))), expected
    )


def test_multiscale_picks_level_zero(stack):
    levels = [stack, stack[:, ::2, ::2], stack[:, ::4, ::4]]
    assert full_resolution(levels) is stack
    assert full_resolution(tuple(levels)) is stack
    assert full_resolution(stack) is stack
    assert as_lazy_array([da.from_array(stack)]).shape == stack.shape
    with pytest.raises(InputError, match="largest first"):
        full_resolution(levels[::-1])
    with pytest.raises(InputError, match="at least one level"):
        full_resolution([])


def test_napari_multiscale_data_picks_level_zero(stack):
    from napari.layers._multiscale_data import MultiScaleData

    assert full_resolution(MultiScaleData([stack, stack[:, ::2, ::2]])) is stack
