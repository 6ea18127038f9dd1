from pathlib import Path

import numpy as np
import pytest

from napari_fcnseg._sample_data import egg_chamber_slice, egg_chamber_stack

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"


def test_egg_chamber_slice_layer_data():
    layers = egg_chamber_slice()
    assert len(layers) == 1
    data, meta, kind = layers[0]
    assert kind == "image" and meta["rgb"] is True and meta["name"] == "egg chambers (synthetic)"
    assert data.dtype == np.uint8 and data.ndim == 3 and data.shape[-1] == 3
    np.testing.assert_array_equal(data, egg_chamber_slice()[0][0])  # fixed seed


def test_egg_chamber_stack_layer_data():
    (data, meta, kind), *rest = egg_chamber_stack()
    assert not rest and kind == "image" and meta["rgb"] is True
    assert meta["name"] == "egg chamber stack (synthetic)"
    assert data.dtype == np.uint8 and data.ndim == 4 and data.shape[-1] == 3
    assert len(meta["scale"]) == 3 and meta["scale"][0] > 0


def test_sample_data_folder_matches_generator():
    tifffile = pytest.importorskip("tifffile")
    path = SAMPLE_DIR / "egg_chambers.tif"
    if not path.exists():
        pytest.skip(f"{path} absent: run scripts/make_sample_data.py")
    on_disk = tifffile.imread(path)
    generated = egg_chamber_slice()[0][0]
    assert on_disk.shape == generated.shape
    # tolerate rounding differences between platforms; a changed generator fails here
    assert np.abs(on_disk.astype(int) - generated).mean() < 0.5, "regenerate sample_data/"
