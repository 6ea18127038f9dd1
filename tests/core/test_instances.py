"""Egg chambers as objects: splitting touching chambers, and the measurements table."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fcnseg.core.instances import object_table, split_instances
from napari_fcnseg.errors import InputError
from tests.helpers import touching_discs


def test_touching_chambers_are_split_and_a_cut_one_stays_whole():
    mask, _, parts = touching_discs()
    labels = split_instances(mask)
    assert labels.dtype == np.uint16 and labels.max() == 3
    for part in parts:
        ids, counts = np.unique(labels[part], return_counts=True)
        best = ids[np.argmax(counts)]
        assert best > 0
        iou = (part & (labels == best)).sum() / (part | (labels == best)).sum()
        assert iou > 0.9
    assert (labels > 0).sum() == mask.sum()  # no foreground pixel lost


def test_one_round_chamber_is_one_object():
    yy, xx = np.mgrid[:200, :200]
    ellipse = ((yy - 100) / 80.0) ** 2 + ((xx - 100) / 50.0) ** 2 < 1
    assert split_instances(ellipse).max() == 1


def test_stacks_number_on_and_debris_is_dropped():
    mask, _, _ = touching_discs()
    stack = np.stack([mask, mask])
    labels = split_instances(stack)
    assert labels.shape == stack.shape
    assert set(np.unique(labels[0])) == {0, 1, 2, 3} and set(np.unique(labels[1])) == {0, 4, 5, 6}
    speck = np.zeros((64, 64), bool)
    speck[10:14, 10:14] = True
    assert split_instances(speck).max() == 0
    with pytest.raises(InputError, match=r"\(Y, X\)"):
        split_instances(np.zeros(5, bool))


def test_table_columns_units_and_border_flag():
    mask, _, _ = touching_discs()
    labels = split_instances(mask)
    image = np.zeros((*mask.shape, 3), np.uint8)
    image[..., 0] = 200 * mask
    image[..., 2] = 50
    table = object_table(labels, image, scale=(0.5, 0.5), unit="um")
    assert list(table["label"]) == [1, 2, 3]
    np.testing.assert_allclose(table["area"], table["area_px"] * 0.25)
    assert set(table["area_unit"]) == {"um^2"}
    assert list(table["touches_border"]) == [False, False, True]
    np.testing.assert_allclose(table["mean_intensity_0"], 200)
    np.testing.assert_allclose(table["mean_intensity_2"], 50)
    assert (table["major_axis_length"] >= table["minor_axis_length"]).all()
    plain = object_table(labels)
    assert "mean_intensity_0" not in plain and set(plain["area_unit"]) == {"px^2"}
    with pytest.raises(InputError, match="give the image"):
        object_table(labels, image[:10])
