from __future__ import annotations

import numpy as np
import pytest

from napari_fcnseg.core.edits import (
    PredictionRecord,
    annotated_slices,
    changed_mask,
    changed_slices,
    is_edited,
    soft_labels,
)
from napari_fcnseg.errors import InputError


def _record(shape=(4, 8, 8)):
    pred = np.zeros(shape, np.uint8)
    probs = np.zeros((2, *shape), np.float32)
    return PredictionRecord.from_prediction(pred, probs, image_name="img", model="v001")


def test_snapshot_is_a_copy():
    labels = np.zeros((8, 8), np.uint8)
    record = PredictionRecord.from_prediction(labels, None)
    labels[2, 3] = 1
    assert record.prediction[2, 3] == 0
    assert is_edited(record.prediction, labels)
    assert changed_slices(record.prediction, labels) == [0]
    assert changed_mask(record.prediction, labels).sum() == 1
    assert record.predicted_slices == {0}


def test_changed_and_checked_slices():
    record = _record()
    labels = record.prediction.copy()
    assert not is_edited(record.prediction, labels)
    assert changed_slices(record.prediction, labels) == []
    labels[1, :2, :2] = 1
    labels[3, 5, 5] = 1
    record.checked.add(2)
    assert changed_slices(record.prediction, labels) == [1, 3]
    slices = annotated_slices(record, labels)
    assert [s.index for s in slices] == [1, 2, 3]
    assert slices[0].corrected.sum() == 4 and not slices[0].checked
    assert slices[1].corrected.all() and slices[1].checked
    assert slices[2].labels[5, 5] == 1


def test_shape_change_is_an_edit_and_a_readable_error():
    record = _record()
    other = np.zeros((4, 8, 9), np.uint8)
    assert is_edited(record.prediction, other)
    with pytest.raises(InputError, match="cannot be traced"):
        changed_mask(record.prediction, other)


def test_update_slice():
    record = PredictionRecord.from_prediction(
        np.zeros((3, 4, 4), np.uint8), np.zeros((2, 3, 4, 4), np.float32), predicted_slices=[0]
    )
    record.update_slice(2, np.ones((4, 4), np.uint8), np.full((2, 4, 4), 0.5, np.float32))
    assert record.predicted_slices == {0, 2}
    assert record.prediction[2].all() and record.probabilities[:, 2].min() == 0.5


def test_probability_shape_is_checked():
    with pytest.raises(InputError, match="do not match"):
        PredictionRecord.from_prediction(np.zeros((4, 4), np.uint8), np.zeros((2, 4, 5)))


def test_soft_labels():
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    probs = soft_labels(labels, 3, confidence=0.8)
    assert probs.shape == (3, 2, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-6)
    assert (probs.argmax(0) == labels).all()
    assert probs[1, 0, 1] == pytest.approx(0.8) and probs[0, 0, 1] == pytest.approx(0.1)
    with pytest.raises(InputError, match="only 2 classes"):
        soft_labels(labels, 2)


def test_from_slice():
    probs = np.full((2, 4, 4), 0.5, np.float32)
    record = PredictionRecord.from_slice(3, 1, np.ones((4, 4), np.uint8), probs, model="m")
    assert record.prediction.shape == (3, 4, 4) and record.prediction[1].all()
    assert not record.prediction[0].any() and record.predicted_slices == {1}
    assert record.probabilities.shape == (2, 3, 4, 4) and record.model == "m"
    with pytest.raises(InputError, match="outside"):
        PredictionRecord.from_slice(3, 3, np.ones((4, 4), np.uint8), None)
