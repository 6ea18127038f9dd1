"""**Suggest next slice** in the Fine-tune form: the viewer goes where a correction teaches most."""

from __future__ import annotations

from napari_fcnseg._qt.shared import MODELS
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.core.suggest import DEFAULT_MEASURE, rank_for_annotation
from napari_fcnseg.model.checkpoint import save_model
from tests._qt.helpers import errors, run
from tests.helpers import hard_disks_stack


def _suggest(qtbot, panel) -> None:
    """Press Suggest next slice and wait until its ranking job has ended."""
    ended = {"check_params_cb": lambda on: not on, "timeout": 60_000}
    with qtbot.waitSignal(panel.runner.running, **ended):
        panel.suggest_button.native.click()


def test_suggest_moves_to_the_slice_to_correct_and_shows_its_score(
    qtbot, viewer, segment_dock, train_dock, trained_tiny_model, tmp_path
):
    segment = segment_dock.segment
    segment.model.value = "file"
    segment.model_file.value = save_model(trained_tiny_model, tmp_path / "disks.safetensors")
    segment.device.value, segment.tile.value = "cpu", 64
    stack = hard_disks_stack(hard=2)
    viewer.add_image(stack, name="stack", rgb=True)
    run(qtbot, segment)
    labels = viewer.layers["stack labels"]
    expected = run_to_completion(rank_for_annotation(trained_tiny_model, stack, device="cpu"))
    assert expected[0].z == 2  # the core ranks the hard slice first
    viewer.dims.set_point(0, 0)
    viewer.layers.selection.active = viewer.layers["stack"]
    panel = train_dock.finetune.suggest
    panel.suggest_button.native.click()
    assert not train_dock.finetune.run_button.enabled  # one job at a time
    qtbot.waitUntil(lambda: not panel.runner.is_running, timeout=60_000)
    assert viewer.dims.current_step[0] == 2
    assert viewer.layers.selection.active is labels  # ready to paint on
    assert panel.suggestion.value == (
        f"next: stack slice 2 ({DEFAULT_MEASURE} score {expected[0].score:.3f}; "
        "4 of 4 ranked slices left)"
    )
    assert train_dock.finetune.run_button.enabled
    # Correct slice 2: the next press moves on to the next slice, without ranking again.
    data = labels.data.copy()
    data[2] = 0
    labels.data = data
    panel.suggest_button.native.click()
    assert not panel.runner.is_running
    assert viewer.dims.current_step[0] == expected[1].z
    assert f"slice {expected[1].z} " in panel.suggestion.value
    assert "3 of 4 ranked slices left" in panel.suggestion.value
    # A new model (e.g. after a fine-tune round) makes the next press rank again.
    MODELS.changed.emit()
    assert panel.ranking is None and "rank again" in panel.suggestion.value
    _suggest(qtbot, panel)
    assert sorted(s.z for s in panel.ranking.suggestions) == [0, 1, 3]  # slice 2 is corrected


def test_suggest_without_labels_says_what_to_do(qtbot, viewer, train_dock, notifications):
    train_dock.finetune.suggest.suggest_button.native.click()
    assert "no labels to rank: segment an image first" in errors(notifications)[-1]
