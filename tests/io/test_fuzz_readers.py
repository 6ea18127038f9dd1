"""Property-based tests: any small file the readers are given gives an image or an InputError."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import tifffile
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from skimage import io as skio

from napari_fcnseg.errors import InputError
from napari_fcnseg.io.images import read_image
from napari_fcnseg.io.labels import read_labels

FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

TIFF_DTYPES = st.sampled_from(
    ["uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64", "bool", "c8"]
)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=6)
# Ways a file on disk goes wrong: kept whole, cut short, or a run of its bytes overwritten.
DAMAGE = st.one_of(
    st.just(None),
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
)


def _damage(path: Path, damage: tuple | None) -> None:
    if damage is None:
        return
    data = bytearray(path.read_bytes())
    at = int(damage[1] * len(data))
    if damage[0] == "cut":
        del data[at:]
    else:
        data[at : at + len(damage[2])] = damage[2]
    path.write_bytes(bytes(data))


def _check_read(path: Path) -> None:
    try:
        image = read_image(path)
    except InputError as exc:
        assert str(path) in str(exc)  # the error names the file
        return
    data = np.asarray(image.data)
    assert data.dtype.kind in "uif" and data.size > 0
    assert len(image.layout.axes) == data.ndim
    assert set(image.layout.axes) >= {"Y", "X"}
    if data.dtype.kind == "f":
        assert np.isfinite(data).all()


def _check_labels(path: Path) -> None:
    try:
        labels = read_labels(path)
    except InputError:
        return
    assert labels.dtype.kind in "ui" and labels.ndim in (2, 3)


@FUZZ
@given(
    array=hnp.arrays(TIFF_DTYPES, SHAPES, elements={"allow_subnormal": False}),
    damage=DAMAGE,
    imagej=st.booleans(),
)
def test_tiff_reader_gives_an_image_or_an_input_error(array, damage, imagej):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.tif"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tifffile.imwrite(path, array, imagej=imagej and array.dtype.kind in "uf")
        except Exception:
            assume(False)  # not a TIFF tifffile can write
        _damage(path, damage)
        _check_read(path)
        _check_labels(path)


@FUZZ
@given(
    array=hnp.arrays(
        st.sampled_from(["uint8", "uint16"]),
        st.tuples(st.integers(1, 12), st.integers(1, 12))
        | st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from([3, 4])),
    ),
    suffix=st.sampled_from([".png", ".jpg"]),
    damage=DAMAGE,
)
def test_png_and_jpeg_readers_give_an_image_or_an_input_error(array, suffix, damage):
    assume(suffix == ".png" or (array.dtype == np.uint8 and array.shape[-1] != 4))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                skio.imsave(path, array, check_contrast=False)
        except Exception:
            assume(False)  # a format that cannot hold this array
        _damage(path, damage)
        _check_read(path)
        if suffix == ".png":
            _check_labels(path)
