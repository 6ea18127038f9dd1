from __future__ import annotations

import numpy as np
import pytest

from napari_fcnseg.errors import InputError
from napari_fcnseg.io.axes import infer_layout, to_zyxc


@pytest.mark.parametrize(
    ("shape", "axes"),
    [
        ((30, 40), "YX"),
        ((30, 40, 3), "YXC"),
        ((5, 30, 40), "ZYX"),
        ((5, 30, 40, 2), "ZYXC"),
        ((5, 2, 30, 40), "ZCYX"),
    ],
)
def test_inferred_layouts(shape, axes):
    layout = infer_layout(shape)
    assert layout.axes == axes
    assert to_zyxc(np.zeros(shape), layout).ndim == 4


def test_to_zyxc_moves_axes():
    image = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # Z C Y X
    stack = to_zyxc(image, infer_layout(image.shape, "ZCYX"))
    assert stack.shape == (2, 4, 5, 3)
    assert stack[1, 2, 3, 0] == image[1, 0, 2, 3]


@pytest.mark.parametrize("shape", [(6, 7, 30, 40), (2, 3, 5, 30, 40)])
def test_ambiguous_axes_are_refused_with_advice(shape):
    with pytest.raises(InputError, match="--axes"):
        infer_layout(shape)


@pytest.mark.parametrize("shape", [(), (0, 10), (10, 0, 3)])
def test_empty_is_refused(shape):
    with pytest.raises(InputError, match="empty"):
        infer_layout(shape)


def test_axes_with_singleton_time_are_accepted():
    layout = infer_layout((1, 5, 30, 40), "TZYX")
    assert to_zyxc(np.zeros((1, 5, 30, 40)), layout).shape == (5, 30, 40, 1)


def test_axes_of_wrong_length():
    with pytest.raises(InputError, match="one letter per dimension"):
        infer_layout((30, 40), "ZYX")
