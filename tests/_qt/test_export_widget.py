from __future__ import annotations

import json

import numpy as np
import tifffile

from napari_fcnseg._qt.export_widget import ExportWidget
from napari_fcnseg._qt.layers import record_of
from tests._qt.helpers import disk_image, errors, run


def _segment_and_correct(qtbot, viewer, segment, image, name="cells"):
    viewer.add_image(image, name=name, rgb=True)
    run(qtbot, segment)
    layer = viewer.layers[f"{name} labels"]
    layer.paint((5, 5), 1 - int(np.asarray(layer.data)[(..., 5, 5)].flat[0]), refresh=True)
    return layer


def test_export_writes_items_and_asks_before_replacing(
    qtbot, viewer, segment, train_dock, tmp_path, monkeypatch
):
    export = train_dock.export
    image, _ = disk_image()
    layer = _segment_and_correct(qtbot, viewer, segment, image)
    assert export.labels_layer.value is layer
    folder = tmp_path / "set"
    export.folder.value = folder
    assert "new set" in export.summary.value
    run(qtbot, export)
    manifest = json.loads((folder / "dataset.json").read_text())
    assert [item["name"] for item in manifest["items"]] == ["cells"]
    np.testing.assert_array_equal(tifffile.imread(folder / "images" / "cells.tif"), image)
    np.testing.assert_array_equal(tifffile.imread(folder / "labels" / "cells.tif"), layer.data)
    corrected = tifffile.imread(folder / "corrected" / "cells.tif")
    changed = np.asarray(layer.data) != record_of(layer).prediction
    assert 0 < changed.sum() < 200 and (corrected.astype(bool) == changed).all()  # one dab
    assert export.summary.value == "1 image, 1 added today"

    asked = []
    # (patched on the class: magicgui containers do not support deleting instance attributes)
    monkeypatch.setattr(ExportWidget, "ask_overwrite", lambda _, n: asked.append(n) or False)
    before = (folder / "labels" / "cells.tif").stat().st_mtime_ns
    export.run_button.native.click()  # declined: nothing is written, no job starts
    assert asked == [["cells"]]
    assert (folder / "labels" / "cells.tif").stat().st_mtime_ns == before
    monkeypatch.setattr(ExportWidget, "ask_overwrite", lambda _, n: asked.append(n) or True)
    layer.paint((40, 40), 1 - int(layer.data[40, 40]))
    run(qtbot, export)
    np.testing.assert_array_equal(tifffile.imread(folder / "labels" / "cells.tif"), layer.data)
    assert export.summary.value == "1 image, 1 added today"


def test_export_stack_slices(qtbot, viewer, segment, train_dock, tmp_path):
    stack = np.stack([disk_image(seed=s)[0] for s in range(3)])
    viewer.add_image(stack, name="my stack", rgb=True)
    run(qtbot, segment)
    layer = viewer.layers["my stack labels"]
    data = np.array(layer.data)
    data[2, :4, :4] = 1 - data[2, :4, :4]
    layer.data = data
    viewer.dims.set_point(0, 0)
    viewer.layers.selection.active = layer
    train_dock.finetune.mark_button.native.click()  # slice 0 checked
    export = train_dock.export
    export.folder.value = tmp_path / "set"
    run(qtbot, export)
    manifest = json.loads((tmp_path / "set" / "dataset.json").read_text())
    items = {item["name"]: item for item in manifest["items"]}
    assert set(items) == {"my_stack_z000", "my_stack_z002"}
    assert items["my_stack_z002"]["slice_index"] == 2
    assert items["my_stack_z002"]["corrected_pixels"] == 16
    assert items["my_stack_z000"]["corrected_pixels"] == 64 * 64
    assert export.summary.value == "2 images, 2 added today"


def test_export_errors_are_notified(qtbot, viewer, segment, train_dock, tmp_path, notifications):
    export = train_dock.export
    export.run_button.native.click()
    assert "no labels to export" in errors(notifications)[-1]
    _segment_and_correct(qtbot, viewer, segment, disk_image()[0])
    export.run_button.native.click()
    assert "choose the annotated-set folder" in errors(notifications)[-1]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    export.folder.value = busy
    export.run_button.native.click()
    assert "not an empty folder" in errors(notifications)[-1]


def test_export_to_an_unwritable_folder_says_so(
    qtbot, viewer, segment, train_dock, tmp_path, notifications, monkeypatch
):
    """A folder that cannot be written gives a notification naming it, and nothing is lost."""
    export = train_dock.export
    layer = _segment_and_correct(qtbot, viewer, segment, disk_image()[0])
    before = np.array(layer.data)
    (tmp_path / "a file").write_text("not a folder")
    export.folder.value = tmp_path / "a file" / "set"  # the OS refuses to make this folder
    export.run_button.native.click()
    message = errors(notifications)[-1]
    assert "cannot write to the annotated set" in message and "a file" in message
    assert "choose a folder you can write to" in message

    import errno

    from filelock import FileLock

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileLock, "acquire", full_disk)
    export.folder.value = tmp_path / "full"
    export.run_button.native.click()
    assert "free some space" in errors(notifications)[-1]
    np.testing.assert_array_equal(layer.data, before)  # the user's labels are untouched
