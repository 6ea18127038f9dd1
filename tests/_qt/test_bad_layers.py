"""Bad image layers give one napari notification saying what to do, and add no layer."""

from __future__ import annotations

import numpy as np

from tests._qt.helpers import disk_image, errors, run


def test_nan_image_layer_is_notified_and_adds_no_layer(qtbot, viewer, segment, notifications):
    image = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
    image[1, 5, 5] = np.nan
    viewer.add_image(image, name="with holes")
    run(qtbot, segment)
    message = errors(notifications)[-1]
    assert "image layer 'with holes', slice 1" in message
    assert "NaN or infinite values; replace them" in message
    assert [layer.name for layer in viewer.layers] == ["with holes"]
    assert segment.run_button.enabled


def test_infinite_value_in_the_current_slice_is_notified(qtbot, viewer, segment, notifications):
    image = np.ones((2, 64, 64), np.float32)
    image[0, 0, 0] = np.inf
    viewer.add_image(image, name="stack")
    viewer.dims.set_point(0, 0)
    segment.scope.value = "slice"
    run(qtbot, segment)
    assert "image layer 'stack', slice 0" in errors(notifications)[-1]
    assert len(viewer.layers) == 1


def test_export_of_labels_shaped_unlike_the_image_is_notified(
    qtbot, viewer, segment, train_dock, tmp_path, notifications
):
    viewer.add_image(disk_image()[0], name="cells", rgb=True)
    run(qtbot, segment)
    labels = viewer.layers["cells labels"]
    labels.paint((5, 5), 1 - int(labels.data[5, 5]))
    viewer.layers["cells"].data = disk_image(size=48)[0]  # the image changed size meanwhile
    export = train_dock.export
    export.folder.value = tmp_path / "set"
    run(qtbot, export)
    assert errors(notifications), "a shape mismatch must be reported"
    assert "labels shaped (64, 64)" in errors(notifications)[-1]
    assert "shaped like the image's (48, 48)" in errors(notifications)[-1]
    assert not (tmp_path / "set" / "images").exists()
