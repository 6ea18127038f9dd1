from __future__ import annotations

import time

import numpy as np
import pytest
from napari.layers import Image, Labels
from qtpy.QtCore import QTimer

from napari_fcnseg._qt.layers import record_of
from napari_fcnseg.core.uncertainty import entropy_uncertainty
from tests._qt.helpers import SEGMENT_DOCK, disk_image, errors, run


def test_docks_and_menu(viewer, segment_dock, train_dock):
    texts = {
        segment_dock.segment.run_button.text,
        segment_dock.crf.run_button.text,
        train_dock.finetune.run_button.text,
        train_dock.export.run_button.text,
    }
    assert texts == {"Segment", "Refine with CRF", "Fine-tune", "Export"}
    from napari._app_model import get_app_model

    menu = get_app_model().menus.get_menu("napari/layers/segment")
    commands = {getattr(item, "command", None) and item.command.id for item in menu}
    assert {"napari-fcnseg.segment_dock", "napari-fcnseg.train_dock"} <= commands


def test_dock_opened_after_the_image_offers_it(viewer):
    layer = viewer.add_image(disk_image()[0], name="cells", rgb=True)
    viewer.add_labels(disk_image()[1], name="drawn")
    _, dock = viewer.window.add_plugin_dock_widget("napari-fcnseg", SEGMENT_DOCK)
    assert dock.segment.image.value is layer
    assert dock.crf.labels_layer.value is viewer.layers["drawn"]
    assert dock.crf.start_from.value == "labels"


def test_segment_2d_adds_labels_with_probabilities(qtbot, viewer, segment):
    image, _ = disk_image()
    viewer.add_image(image, name="cells", rgb=True, scale=(0.5, 0.5))
    run(qtbot, segment)
    layer = viewer.layers["cells labels"]
    assert isinstance(layer, Labels) and layer.data.shape == (64, 64)
    assert tuple(layer.scale) == (0.5, 0.5)
    record = record_of(layer)
    assert record.probabilities.shape == (2, 64, 64)
    assert record.image_name == "cells" and record.class_names[0] == "background"
    np.testing.assert_array_equal(record.prediction, layer.data)
    assert viewer.layers.selection.active is layer
    # seen clearly: class 1 in a bright contrasting colour, background transparent, names on hover
    np.testing.assert_allclose(layer.colormap.map(1)[:3], [0.0, 0xE5 / 255, 1.0], atol=0.01)
    assert layer.colormap.map(0)[3] == 0
    assert list(layer.features["class"]) == ["background", "class 1"]
    value = int(layer.data[10, 10])
    status = layer.get_status((10 * 0.5, 10 * 0.5))  # world coordinates (scale 0.5)
    assert f"class: {record.class_names[value]}" in str(status)


def test_show_uncertainty_adds_an_image_layer(qtbot, viewer, segment):
    image, _ = disk_image()
    viewer.add_image(image, name="cells", rgb=True, scale=(0.5, 0.5))
    segment.uncertainty.value = True
    run(qtbot, segment)
    unsure = viewer.layers["cells uncertainty"]
    assert isinstance(unsure, Image) and unsure.data.shape == (64, 64)
    assert unsure.data.dtype == np.float32 and 0 <= unsure.data.min() <= unsure.data.max() <= 1
    np.testing.assert_allclose(
        unsure.data, entropy_uncertainty(record_of(viewer.layers["cells labels"]).probabilities)
    )
    assert tuple(unsure.scale) == (0.5, 0.5) and unsure.colormap.name == "magma"
    assert viewer.layers.selection.active is viewer.layers["cells labels"]
    offered = [c for c in segment.image.choices if c is not None]
    assert offered == [viewer.layers["cells"]]  # the map is not offered as an image
    run(qtbot, segment)  # again: the layer is reused, not duplicated
    assert [layer.name for layer in viewer.layers] == ["cells", "cells labels", "cells uncertainty"]


def test_uncertainty_of_one_slice_of_a_stack(qtbot, viewer, segment):
    stack = np.stack([disk_image(seed=s)[0][..., 0] for s in range(3)])
    viewer.add_image(stack, name="stack")
    segment.scope.value = "slice"
    segment.uncertainty.value = True
    viewer.dims.set_point(0, 1)
    run(qtbot, segment)
    unsure = viewer.layers["stack uncertainty"]
    assert unsure.data.shape == (3, 64, 64)
    assert unsure.data[1].max() > 0 and unsure.data[0].max() == 0 and unsure.data[2].max() == 0
    viewer.dims.set_point(0, 2)
    run(qtbot, segment)
    assert viewer.layers["stack uncertainty"] is unsure and unsure.data[2].max() > 0


def test_rerun_reuses_an_unedited_layer_and_keeps_edits(qtbot, viewer, segment, notifications):
    image, _ = disk_image()
    viewer.add_image(image, name="cells", rgb=True)
    run(qtbot, segment)
    run(qtbot, segment)
    assert [layer.name for layer in viewer.layers] == ["cells", "cells labels"]
    edited = viewer.layers["cells labels"]
    edited.paint((10, 10), 1 - int(edited.data[10, 10]))  # a brush stroke that changes a label
    painted = np.array(edited.data)
    run(qtbot, segment)
    assert "cells labels (2)" in viewer.layers
    np.testing.assert_array_equal(viewer.layers["cells labels"].data, painted)
    assert any("holds edits" in n.message for n in notifications)


def test_segment_current_slice_of_a_stack(qtbot, viewer, segment):
    stack = np.stack([disk_image(seed=s)[0][..., 0] for s in range(4)])
    viewer.add_image(stack, name="stack", scale=(4, 1, 1))
    viewer.dims.set_point(0, 8)  # world z=8 -> slice 2
    segment.scope.value = "slice"
    run(qtbot, segment)
    record = record_of(viewer.layers["stack labels"])
    assert viewer.layers["stack labels"].data.shape == (4, 64, 64)
    assert record.predicted_slices == {2}
    assert record.probabilities[:, 2].sum(0).min() > 0.99
    assert record.probabilities[:, 0].max() == 0
    viewer.dims.set_point(0, 4)
    run(qtbot, segment)
    assert record_of(viewer.layers["stack labels"]).predicted_slices == {1, 2}
    assert len(viewer.layers) == 2


def test_cancel_mid_stack_leaves_no_layer(qtbot, viewer, segment):
    stack = np.random.default_rng(0).random((40, 64, 64)).astype(np.float32)
    viewer.add_image(stack, name="stack")
    events = []

    def cancel_after_two(event):
        events.append(event)
        if len(events) == 2:
            segment.cancel_button.native.click()

    ended = {"check_params_cb": lambda on: not on, "timeout": 30_000}
    with qtbot.waitSignal(segment.runner.running, **ended):
        segment.run_button.native.click()
        worker = segment.runner.worker
        worker.yielded.connect(cancel_after_two)
    assert segment.runner.cancelled and worker.abort_requested
    assert segment.runner.worker is None
    assert events[-1].step < 40 and [layer.name for layer in viewer.layers] == ["stack"]
    assert segment.run_button.enabled and not segment.cancel_button.enabled


def test_event_loop_keeps_running_during_a_job(qtbot, viewer, segment):
    viewer.add_image(np.random.default_rng(0).random((30, 128, 128)), name="stack")
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(10)
    start = time.monotonic()
    run(qtbot, segment, timeout=60_000)
    end = time.monotonic()
    timer.stop()
    during = [t for t in ticks if start <= t <= end]
    gaps = np.diff([start, *during, end])
    assert end - start > 0.2 and len(during) >= 5
    assert gaps.max() < 0.5, f"GUI thread blocked for {gaps.max():.2f} s"


def test_closing_the_viewer_stops_the_job(qtbot, viewer, segment):
    viewer.add_image(np.random.default_rng(0).random((200, 64, 64)), name="stack")
    segment.run_button.native.click()
    worker = segment.runner.worker
    qtbot.waitSignal(worker.yielded, timeout=10_000).wait()
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        viewer.close()
    assert worker.abort_requested
    # The runner cleaned up even though the viewer deleted its widget first: no job, and no
    # reference to the worker (which would keep the closed viewer alive: napari's fixture
    # fails the test on a leaked viewer).
    assert not segment.runner.is_running and segment.runner.worker is None


def test_errors_become_notifications(qtbot, viewer, segment, tmp_path, notifications):
    segment.run_button.native.click()  # no image
    assert "no image to segment" in errors(notifications)[-1]
    viewer.add_image(np.zeros((2, 3, 32, 32)), name="4d")
    segment.run_button.native.click()
    assert "4 dimensions" in errors(notifications)[-1]
    segment.image.value = viewer.add_image(disk_image()[0], name="cells", rgb=True)
    segment.model_file.value = ""
    segment.run_button.native.click()
    assert "no model file chosen" in errors(notifications)[-1]
    assert ".safetensors" in errors(notifications)[-1]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04 a pickle")
    segment.model_file.value = bad
    run(qtbot, segment)  # fails in the worker
    assert "pickle" in errors(notifications)[-1]
    segment.device.value = "cuda"
    segment.model_file.value = tmp_path / "tiny.safetensors"
    run(qtbot, segment)
    import torch

    if not torch.cuda.is_available():
        assert "no usable CUDA GPU" in errors(notifications)[-1]
    assert segment.run_button.enabled


def test_docks_fit_a_1600x1000_window(qtbot, viewer):
    """Each dock opens full height and needs no horizontal scrolling in a 1600x1000 window."""
    from qtpy.QtWidgets import QApplication, QScrollArea

    window = viewer.window._qt_window
    window.resize(1600, 1000)
    window.show()
    docks = {}
    for name in (SEGMENT_DOCK, "Fine-tune and Export"):
        dock, _ = viewer.window.add_plugin_dock_widget("napari-fcnseg", name)
        docks[name] = dock
    for _ in range(5):
        QApplication.processEvents()
    for name, dock in docks.items():
        dock.raise_()
        QApplication.processEvents()
        assert dock.height() > 400, f"{name} opened {dock.height()} px high"
        for area in dock.findChildren(QScrollArea):
            bar = area.horizontalScrollBar()
            assert bar.maximum() == 0, f"{name} scrolls {bar.maximum()} px sideways"


def test_objects_adds_one_label_per_chamber_with_measurements(qtbot, viewer, segment):
    from napari_fcnseg.core.instances import split_instances

    image, _ = disk_image()
    viewer.add_image(image, name="cells", rgb=True)
    segment.objects.value = True
    run(qtbot, segment)
    objects = viewer.layers["cells objects"]
    labels = viewer.layers["cells labels"]
    assert isinstance(objects, Labels) and objects.data.shape == (64, 64)
    np.testing.assert_array_equal(objects.data, split_instances(np.asarray(labels.data) > 0))
    n = int(objects.data.max())
    assert n >= 1
    assert list(objects.features["index"]) == list(range(1, n + 1))
    assert {"area_px", "eccentricity", "touches_border", "mean_intensity_0"} <= set(
        objects.features.columns
    )
    assert objects.contour > 0
    colours = objects.colormap.map(np.arange(1, 9))
    assert (colours[:, 3] == 1).all() and len({tuple(c) for c in colours}) == 8  # all distinct
    assert (colours[:, :3].max(axis=1) >= 0.8).all()  # none dark
    assert objects.colormap.map(np.array([0]))[0, 3] == 0  # background transparent
    objects.paint((5, 5), 7)  # an edit: the next run keeps it and adds a new layer
    edited = np.array(objects.data)
    run(qtbot, segment)
    np.testing.assert_array_equal(viewer.layers["cells objects"].data, edited)
    assert "cells objects (2)" in viewer.layers


def test_a_package_that_runs_code_is_run_only_when_the_user_trusts_it(
    qtbot, viewer, segment, tmp_path, monkeypatch, notifications
):
    pytest.importorskip("bioimageio.core")
    from napari_fcnseg._qt.segment_widget import SegmentWidget
    from tests.bioimageio_packages import write_package

    package = write_package(tmp_path, weights="torchscript", channels_out=2)
    viewer.add_image(disk_image()[0], name="cells", rgb=True)
    segment.model_file.value = package
    asked: list[tuple[str, ...]] = []
    monkeypatch.setattr(SegmentWidget, "ask_trust", lambda _, p, f: asked.append(f) or False)
    segment.run_button.native.click()  # refused: nothing runs, no layer
    assert asked == [("torchscript",)] and "cells labels" not in viewer.layers
    assert "was not trusted" in notifications[-1].message
    monkeypatch.setattr(SegmentWidget, "ask_trust", lambda _, p, f: asked.append(f) or True)
    run(qtbot, segment)
    assert record_of(viewer.layers["cells labels"]).class_names == ["bg", "cell"]
    run(qtbot, segment)  # trusted once: not asked again this session
    assert len(asked) == 2 and not errors(notifications)


def test_fill_holes_follows_the_model_and_refine_with_crf_keeps_it(
    qtbot, viewer, segment_dock, trained_tiny_model, tmp_path
):
    import copy

    from napari_fcnseg.model.checkpoint import save_model
    from tests.helpers import ring

    segment, crf = segment_dock.segment, segment_dock.crf
    plain = save_model(trained_tiny_model, tmp_path / "plain.safetensors")
    solid_model = copy.deepcopy(trained_tiny_model)
    solid_model.info.fill_holes = True
    solid = save_model(solid_model, tmp_path / "solid.safetensors")
    segment.model.value = "default"
    assert segment.fill_holes.value  # the bundled egg model says its objects are solid
    segment.model.value = "file"
    segment.model_file.value = plain
    assert not segment.fill_holes.value
    segment.model_file.value = solid
    assert segment.fill_holes.value
    segment.device.value, segment.tile.value = "cpu", 64
    image, hole = ring()
    viewer.add_image(image, name="ring", rgb=True)
    run(qtbot, segment)
    layer = viewer.layers["ring labels"]
    assert (layer.data[hole] == 1).all() and record_of(layer).fill_holes
    crf.iterations.value = 3
    run(qtbot, crf)
    refined = viewer.layers["ring labels CRF"]
    assert (refined.data[hole] == 1).all() and record_of(refined).fill_holes
    segment.fill_holes.value = False  # the user's choice wins over the model's
    run(qtbot, segment)
    assert (viewer.layers["ring labels"].data[hole] == 0).all()
    assert not record_of(viewer.layers["ring labels"]).fill_holes
