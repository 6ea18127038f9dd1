"""Per-pixel uncertainty: normalised entropy of the class probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fcnseg.core.uncertainty import entropy_uncertainty
from napari_fcnseg.errors import InputError


def test_sure_pixels_are_zero_and_undecided_ones_are_one():
    probs = np.zeros((2, 2, 3), np.float32)
    probs[0, 0] = 1.0  # row 0: certain background
    probs[:, 1] = 0.5  # row 1: undecided
    unsure = entropy_uncertainty(probs)
    assert unsure.dtype == np.float32 and unsure.shape == (2, 3)
    np.testing.assert_allclose(unsure[0], 0.0, atol=1e-5)
    np.testing.assert_allclose(unsure[1], 1.0, atol=1e-5)


def test_scale_does_not_depend_on_the_number_of_classes():
    for k in (2, 3, 5):
        uniform = np.full((k, 4, 4), 1.0 / k, np.float32)
        np.testing.assert_allclose(entropy_uncertainty(uniform), 1.0, atol=1e-5)


def test_more_mixed_is_more_unsure(rng):
    p = np.linspace(0.5, 1.0, 11, dtype=np.float32)
    probs = np.stack([p, 1 - p])[:, None, :]  # (2, 1, 11)
    unsure = entropy_uncertainty(probs)[0]
    assert (np.diff(unsure) < 0).all()  # from 0.5/0.5 towards 1/0 it only falls
    # symmetric in the classes
    np.testing.assert_allclose(entropy_uncertainty(probs[::-1]), entropy_uncertainty(probs))


def test_stacks_slice_by_slice_equal_the_whole(rng):
    raw = rng.random((3, 4, 16, 16)).astype(np.float32)
    probs = raw / raw.sum(0, keepdims=True)
    stack = entropy_uncertainty(probs)
    assert stack.shape == (4, 16, 16)
    for z in range(4):
        np.testing.assert_allclose(stack[z], entropy_uncertainty(probs[:, z]), rtol=1e-6)
    assert 0.0 <= stack.min() and stack.max() <= 1.0


@pytest.mark.parametrize("shape", [(2, 8), (1, 8, 8), (8,)])
def test_bad_shapes_say_what_is_expected(shape):
    with pytest.raises(InputError, match="K >= 2"):
        entropy_uncertainty(np.ones(shape, np.float32))
