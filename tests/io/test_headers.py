from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import io as skio

from napari_fcnseg.errors import InputError
from napari_fcnseg.io import images
from napari_fcnseg.io.headers import declared_size
from napari_fcnseg.io.images import read_image
from tests.helpers import huge_jpeg, huge_png


@pytest.mark.parametrize(
    ("name", "array", "expected"),
    [
        ("grey.png", np.zeros((30, 40), np.uint8), (30, 40, 1, 1)),
        ("grey16.png", np.zeros((30, 40), np.uint16), (30, 40, 1, 2)),
        ("rgb.png", np.zeros((30, 40, 3), np.uint8), (30, 40, 3, 1)),
        ("rgba.png", np.zeros((30, 40, 4), np.uint8), (30, 40, 4, 1)),
        ("grey.jpg", np.zeros((30, 40), np.uint8), (30, 40, 1, 1)),
        ("rgb.jpg", np.zeros((30, 40, 3), np.uint8), (30, 40, 3, 1)),
    ],
)
def test_declared_size_matches_the_decoded_image(tmp_path, name, array, expected):
    path = tmp_path / name
    skio.imsave(path, array, check_contrast=False)
    size = declared_size(path)
    assert (size.height, size.width, size.channels, size.itemsize) == expected
    decoded = skio.imread(path)
    assert size.nbytes >= decoded.nbytes


def test_palette_png_is_counted_as_rgba(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).convert("P").save(path)
    assert declared_size(path).channels == 4


def test_progressive_jpeg_and_other_content(tmp_path):
    path = tmp_path / "p.jpg"
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(path, progressive=True)
    assert declared_size(path).shape == (10, 12, 3)
    other = tmp_path / "x.png"
    other.write_bytes(b"GIF89a" + b"\x00" * 20)
    assert declared_size(other) is None


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00",  # signature, then nothing
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + b"\x00" * 8 + b"\x08\x09\x00\x00\x00",
        b"\xff\xd8",  # start of image, then nothing
        b"\xff\xd8\xff\xe0\x00\x10JFIF",  # an application segment cut short
        b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 20,  # image data before any frame header
        b"\xff\xd8\x00\x00\x00",  # no marker where one must be
    ],
)
def test_broken_headers_are_refused(tmp_path, content):
    path = tmp_path / "bad.img"
    path.write_bytes(content)
    with pytest.raises(
        InputError,
        match=r"cannot decode this image: its (PNG|JPEG) header is (truncated or )?corrupt",
    ):
        declared_size(path)


def test_huge_declared_png_and_jpeg_are_refused_before_decoding(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the pixels must not be decoded")

    monkeypatch.setattr("skimage.io.imread", never)
    (tmp_path / "huge.png").write_bytes(huge_png())
    with pytest.raises(InputError, match=r"2794\.0 GiB of pixels .* save it as a TIFF"):
        read_image(tmp_path / "huge.png")
    huge_jpeg(tmp_path / "huge.jpg", side=65_000)
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 2**30)
    with pytest.raises(InputError, match=r"11\.8 GiB of pixels \(shape \(65000, 65000, 3\)\)"):
        read_image(tmp_path / "huge.jpg")


def test_pillow_limit_below_our_cap_gives_a_clear_message(tmp_path):
    (tmp_path / "big.png").write_bytes(huge_png(20_000, 20_000))
    with pytest.raises(InputError, match=r"20000x20000\) than Pillow decodes safely"):
        read_image(tmp_path / "big.png")
