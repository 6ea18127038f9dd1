"""Normalisation records: our percentiles, and the methods bioimage.io packages need."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fcnseg.core.normalize import normalization_bounds, normalize_slice
from napari_fcnseg.errors import InputError


@pytest.fixture
def stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal([10.0, 100.0], [2.0, 30.0], size=(2, 40, 50, 2)).astype(np.float32)


def test_percentiles_per_channel(stack):
    lo, hi = normalization_bounds(stack, {"method": "percentile", "low": 1.0, "high": 99.0})
    np.testing.assert_allclose(lo, np.percentile(stack.reshape(-1, 2), 1.0, axis=0), rtol=1e-5)
    np.testing.assert_allclose(hi, np.percentile(stack.reshape(-1, 2), 99.0, axis=0), rtol=1e-5)


def test_joint_percentiles_share_one_range_and_eps_widens_it(stack):
    lo, hi = normalization_bounds(
        stack, {"method": "percentile", "low": 5.0, "high": 95.0, "joint": True, "eps": 0.5}
    )
    assert lo[0] == lo[1] and hi[0] == hi[1]
    assert hi[0] == pytest.approx(np.percentile(stack, 95.0) + 0.5, rel=1e-5)


def test_mean_std_gives_zero_mean_unit_variance(stack):
    lo, hi = normalization_bounds(stack, {"method": "mean_std"})
    out = normalize_slice(stack[0], lo, hi)
    np.testing.assert_allclose(out.reshape(2, -1).mean(1), 0.0, atol=0.05)
    np.testing.assert_allclose(out.reshape(2, -1).std(1), 1.0, atol=0.05)


def test_fixed_bounds_are_used_as_given(stack):
    lo, hi = normalization_bounds(stack, {"method": "fixed", "low": [0.0, 50.0], "high": 255.0})
    np.testing.assert_array_equal(lo, [0.0, 50.0])
    np.testing.assert_array_equal(hi, [255.0, 255.0])


def test_an_unknown_method_says_to_upgrade(stack):
    with pytest.raises(InputError, match="upgrade napari-fcnseg"):
        normalization_bounds(stack, {"method": "histogram"})
