from __future__ import annotations

import numpy as np

from napari_fcnseg._qt.layers import record_of
from tests._qt.helpers import disk_image, errors, run


def test_refine_changes_labels_and_toggles(qtbot, viewer, segment_dock, segment_trained):
    segment = segment_trained
    crf = segment_dock.crf
    image, _ = disk_image()
    viewer.add_image(image, name="cells", rgb=True)
    run(qtbot, segment)
    source = viewer.layers["cells labels"]
    assert crf.labels_layer.value is source and crf.image.value is viewer.layers["cells"]
    assert crf.start_from.value == "probabilities"
    crf.iterations.value = 3
    run(qtbot, crf)
    refined = viewer.layers["cells labels CRF"]
    assert refined.data.shape == source.data.shape
    assert (refined.data != source.data).any()
    assert record_of(refined).probabilities.shape == (2, 64, 64)
    assert refined.visible and not source.visible
    assert crf.before.text == "Show before CRF"
    crf.before.native.click()
    assert source.visible and not refined.visible
    assert crf.before.text == "Show after CRF"  # the button says what it will show next
    crf.before.native.click()
    assert refined.visible and not source.visible
    assert crf.before.text == "Show before CRF"
    assert crf.labels_layer.value is source  # the output is not offered as the next input
    run(qtbot, crf)  # again: the unedited output layer is reused
    assert [layer.name for layer in viewer.layers] == ["cells", "cells labels", "cells labels CRF"]


def test_refine_splits_the_objects_again_from_the_refined_labels(
    qtbot, viewer, segment_dock, segment_trained
):
    from napari_fcnseg.core.instances import split_instances

    crf = segment_dock.crf
    image, _ = disk_image()
    viewer.add_image(image, name="cells", rgb=True)
    segment_trained.objects.value = True
    run(qtbot, segment_trained)
    crf.iterations.value = 3
    run(qtbot, crf)
    refined = np.asarray(viewer.layers["cells labels CRF"].data)
    objects = viewer.layers["cells objects"]  # the unedited layer is reused
    np.testing.assert_array_equal(objects.data, split_instances(refined > 0))
    before = split_instances(np.asarray(viewer.layers["cells labels"].data) > 0)
    assert not np.array_equal(objects.data, before)  # not the objects Segment made
    assert len(objects.features) == int(objects.data.max())
    assert [layer.name for layer in viewer.layers] == [
        "cells",
        "cells labels",
        "cells objects",
        "cells labels CRF",
    ]


def test_refine_without_objects_adds_none(qtbot, viewer, segment_dock, segment_trained):
    viewer.add_image(disk_image()[0], name="cells", rgb=True)
    run(qtbot, segment_trained)
    run(qtbot, segment_dock.crf)
    assert "cells objects" not in viewer.layers


def test_refine_hand_drawn_labels_as_soft_labels(qtbot, viewer, segment_dock):
    crf = segment_dock.crf
    image, truth = disk_image()
    viewer.add_image(image, name="cells", rgb=True)
    rough = np.roll(truth, 3, axis=1)  # a sloppy outline
    viewer.add_labels(rough, name="drawn")
    crf.labels_layer.value = viewer.layers["drawn"]
    crf.image.value = viewer.layers["cells"]
    assert crf.start_from.value == "labels"
    run(qtbot, crf)
    refined = viewer.layers["drawn CRF"].data
    assert (refined != rough).any()
    assert (refined == truth).mean() >= (rough == truth).mean()


def test_stack_spacing_comes_from_the_layer_scale(qtbot, viewer, segment_dock, segment):
    crf = segment_dock.crf
    stack = np.stack([disk_image(seed=s)[0] for s in range(3)])
    viewer.add_image(stack, name="stack", rgb=True, scale=(4, 0.5, 0.5))
    run(qtbot, segment)
    assert crf.spacing() == (8.0, 1.0, 1.0)
    assert crf.params()["spacing"] is None and "slice by slice" in crf.spacing_info.value
    crf.volume.value = True
    assert crf.params()["spacing"] == (8.0, 1.0, 1.0) and "3D" in crf.spacing_info.value
    crf.iterations.value = 2
    run(qtbot, crf)
    assert viewer.layers["stack labels CRF"].data.shape == (3, 64, 64)


def test_crf_errors_are_notified(qtbot, viewer, segment_dock, notifications):
    crf = segment_dock.crf
    crf.run_button.native.click()
    assert "needs a labels layer" in errors(notifications)[-1]
    viewer.add_image(disk_image()[0], name="cells", rgb=True)
    viewer.add_labels(np.zeros((64, 64), np.uint8), name="drawn")
    crf.labels_layer.value = viewer.layers["drawn"]
    crf.image.value = viewer.layers["cells"]
    crf.start_from.value = "probabilities"
    crf.run_button.native.click()
    assert "has no model probabilities" in errors(notifications)[-1]
    viewer.add_image(np.zeros((32, 32)), name="small")
    crf.image.value = viewer.layers["small"]
    crf.start_from.value = "labels"
    run(qtbot, crf)  # the shape mismatch is found in the worker
    assert "same size" in errors(notifications)[-1]
