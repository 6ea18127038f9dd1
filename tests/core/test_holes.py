from __future__ import annotations

import numpy as np
import pytest

from napari_fcnseg.core.holes import fill_foreground_holes
from napari_fcnseg.core.predict import predict_probabilities, probabilities_to_labels
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.core.slices import SliceLabels, label_slices
from napari_fcnseg.errors import InputError
from tests.helpers import ring


def _square_ring() -> np.ndarray:
    labels = np.zeros((20, 30), np.uint8)
    labels[2:12, 2:12] = 1
    labels[5:8, 5:8] = 0  # a hole
    labels[2:12, 20:30] = 1
    labels[5:8, 25:30] = 0  # a bay open to the image border: not a hole
    return labels


def test_a_hole_is_filled_and_a_bay_open_to_the_border_is_not():
    labels = _square_ring()
    filled = fill_foreground_holes(labels)
    assert (filled[5:8, 5:8] == 1).all()
    assert (filled[5:8, 25:30] == 0).all()
    np.testing.assert_array_equal(
        np.delete(filled, np.s_[5:8], 0), np.delete(labels, np.s_[5:8], 0)
    )
    assert labels[6, 6] == 0 and filled.dtype == labels.dtype  # the input is left as it was


def test_with_more_classes_a_hole_takes_its_most_probable_object_class():
    labels = _square_ring() * 3  # the ring is class 3 of four
    probs = np.zeros((4, *labels.shape), np.float32)
    probs[0] = 0.5
    probs[1, :, :15], probs[2, :, 15:] = 0.3, 0.3  # class 1 left, class 2 right
    probs[1, 6, 7], probs[2, 6, 7] = 0.1, 0.4  # one pixel of the hole leans to class 2
    filled = fill_foreground_holes(labels, probs)
    hole = np.zeros(labels.shape, bool)
    hole[5:8, 5:8] = True
    assert filled[6, 7] == 2
    assert (filled[hole & (np.arange(30) != 7)[None, :]] == 1).all()
    assert (filled[~hole] == labels[~hole]).all()
    assert (fill_foreground_holes(labels)[hole] == 1).all()  # without probabilities: class 1


def test_a_stack_is_filled_slice_by_slice():
    stack = np.stack([_square_ring(), np.zeros((20, 30), np.uint8)])
    stack[1, 6, 6] = 0  # background under slice 0's hole, enclosed only in 3D
    filled = fill_foreground_holes(stack)
    assert (filled[0, 5:8, 5:8] == 1).all() and not filled[1].any()


def test_shapes_are_checked():
    with pytest.raises(InputError, match=r"must be \(Y, X\) or \(Z, Y, X\)"):
        fill_foreground_holes(np.zeros(5, np.uint8))
    with pytest.raises(InputError, match="do not match"):
        fill_foreground_holes(np.zeros((4, 4), np.uint8), np.zeros((2, 5, 5), np.float32))


def test_labels_of_a_real_model_have_their_hole_filled_when_asked(trained_tiny_model):
    image, hole = ring()
    probs = run_to_completion(predict_probabilities(trained_tiny_model, image, device="cpu"))
    plain = probabilities_to_labels(probs)
    assert (plain[hole] == 0).all()  # the model leaves the ring's inside background
    filled = probabilities_to_labels(probs, fill_holes=True)
    assert (filled[hole] == 1).all() and (filled[~hole] >= plain[~hole]).all()


@pytest.mark.parametrize(
    ("flag", "asked", "filled"),
    [(True, None, True), (True, False, False), (False, None, False), (False, True, True)],
)
def test_slices_are_labelled_as_the_model_says_unless_told(trained_tiny_model, flag, asked, filled):
    image, hole = ring()
    trained_tiny_model.info.fill_holes = flag
    try:
        events = list(
            label_slices(trained_tiny_model, image, tile=64, device="cpu", fill_holes=asked)
        )
    finally:
        trained_tiny_model.info.fill_holes = False
    (labels,) = [e.labels for e in events if isinstance(e, SliceLabels)]
    assert (labels[hole] == 1).all() == filled
