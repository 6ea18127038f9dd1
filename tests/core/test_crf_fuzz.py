"""Property-based tests of Refine with CRF: any small image and probabilities, valid output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_fcnseg import refine_with_crf
from napari_fcnseg.errors import InputError

FUZZ = settings(max_examples=25, deadline=None)

# Intensities from constant to extreme: zeros, any finite float32, integers.
IMAGE_VALUES = {
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    "uint8": st.integers(0, 255),
    "uint16": st.integers(0, 65535),
}
# Probabilities including exact 0 and 1 and tiny values far below the unary's clip.
PROBABILITY = st.one_of(
    st.sampled_from([0.0, 1.0, 1e-30, 1e-7, 0.5]),
    st.floats(0, 1, width=32, allow_subnormal=False),
)


@st.composite
def crf_inputs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, bool]:
    stack = draw(st.booleans())
    spatial = draw(
        st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12))
        if stack
        else st.tuples(st.integers(1, 12), st.integers(1, 12))
    )
    channels = draw(st.sampled_from([None, 1, 3]))
    dtype = draw(st.sampled_from(list(IMAGE_VALUES)))
    shape = spatial if channels is None else (*spatial, channels)
    image = draw(hnp.arrays(dtype, shape, elements=IMAGE_VALUES[dtype]))
    classes = draw(st.integers(2, 4))
    probs = draw(hnp.arrays(np.float32, (classes, *spatial), elements=PROBABILITY))
    return image, probs, draw(st.booleans())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@FUZZ
@given(inputs=crf_inputs(), iterations=st.integers(1, 3))
def test_crf_output_is_a_probability_distribution(inputs, iterations):
    image, probs, normalised = inputs
    if normalised:  # rows that sum to 0 stay 0: the CRF must cope with that too
        total = probs.sum(0, keepdims=True)
        probs = np.divide(probs, total, out=np.zeros_like(probs), where=total > 0)
    refined = refine_with_crf(image, probs, iterations=iterations, device="cpu")
    assert refined.shape == probs.shape and refined.dtype == np.float32
    assert np.isfinite(refined).all() and (refined >= 0).all()
    np.testing.assert_allclose(refined.sum(0), 1, atol=1e-4)


@FUZZ
@given(inputs=crf_inputs(), bad=st.sampled_from([np.nan, np.inf, -0.5]))
def test_crf_refuses_nan_infinite_and_negative_probabilities(inputs, bad):
    image, probs, _ = inputs
    probs = probs.copy()
    probs.flat[-1] = bad
    with pytest.raises(InputError, match="probabilities"):
        refine_with_crf(image, probs, iterations=1, device="cpu")
