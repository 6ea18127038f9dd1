"""The **Fine-tune** form: learn from the slices a person corrected or checked.

The Labels layers the plugin wrote remember the prediction (see ``core/edits.py``), so the form
knows which pixels and slices were changed, on whichever of them a person paints (the Segment
labels or the CRF's); slices can also be marked as checked, and **Suggest next slice**
(:mod:`.suggest_panel`) shows the slice not yet corrected where a correction teaches most. A
round is one core job (:func:`~napari_fcnseg.training.rounds.correction_round`, which holds
the policy: what to train on, the hold-out, the replay, which version becomes active) run in a
worker with a live plot of loss and held-out IoU against seconds. The dock then says, in
numbers, whether the new version beat the previous one and which is active; Cancel keeps the
previous model. Any earlier version can be made active again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info

from ..core.device import DEVICE_CHOICES
from ..core.edits import changed_slices
from ..core.progress import Progress
from ..errors import FcnsegError, InputError
from ..model.default import default_model_path
from ..training.finetune import FineTuneSettings
from ..training.rounds import RoundResult, base_model, correction_round
from .forms import (
    button_row,
    chosen_path,
    connect_runner,
    run_buttons,
    watch_edits,
    watch_layer_list,
)
from .layers import current_slice, has_corrections, layer_choices, layer_samples, record_of
from .loss_plot import LossPlot
from .model_export import ModelExportPanel
from .shared import MODELS
from .suggest_panel import SuggestPanel
from .workers import JobRunner

if TYPE_CHECKING:
    import napari

#: The policy's defaults, shown in the form.
_POLICY = FineTuneSettings()


class FineTuneWidget(Container):
    """Fine-tune the model on corrected slices and manage the models folder's versions.

    Parameters
    ----------
    viewer
        The napari viewer.
    """

    def __init__(self, viewer: napari.Viewer):
        self._viewer = viewer
        self.layers = Select(label="edited labels", choices=self._labels_choices)
        self.layers.native.setMaximumHeight(70)
        self.edits = Label(value="")
        self.mark_button = PushButton(text="Mark current slice as checked")
        self.suggest = SuggestPanel(
            viewer, lambda: list(self.layers.value), lambda: str(self.device.value)
        )
        # The defaults are the core policy's (benchmarks/bench_loop.py chose them).
        self.seconds = SpinBox(
            label="time budget (s)", min=5, max=86_400, value=int(_POLICY.max_seconds or 60)
        )
        self.steps = SpinBox(label="max steps", min=0, max=100_000, value=0)
        self.steps.native.setSpecialValueText("no limit")
        self.learning_rate = FloatSpinBox(
            label="learning rate", min=1e-6, max=1.0, step=1e-4, value=_POLICY.learning_rate
        )
        self.learning_rate.native.setDecimals(6)
        self.crop = SpinBox(label="crop (px)", min=32, max=1024, step=16, value=_POLICY.crop)
        self.batch = SpinBox(label="batch", min=1, max=64, value=_POLICY.batch_size)
        # The working scale (README, "Working scale"); 0 shows "model's own": keep the scale of
        # the model being fine-tuned.
        self.scale = FloatSpinBox(label="scale", min=0.0, max=4.0, step=0.25, value=0.0)
        self.scale.native.setSpecialValueText("model's own")
        self.scale.tooltip = (
            "resize images by this factor before the network (0.5: objects large in pixels; "
            "4x the context and 4x faster); the fine-tuned model keeps it"
        )
        # Corrections of images the model knows: the decoder; a new imaging mode: every weight.
        self.trainable = ComboBox(
            label="train",
            choices=[
                ("decoder (corrections)", "decoder"),
                ("all weights (new kind of image)", "all"),
            ],
            value=_POLICY.trainable,
        )
        self.trainable.tooltip = (
            "decoder: learn how you correct, keep what the model sees (the default, safest); "
            "all weights: for images unlike the model's training data (no check that it "
            "keeps what it did well there)"
        )
        self.corrected_only = CheckBox(text="learn only near corrected pixels", value=False)
        # The policy's default (off: colour tells classes apart in other imaging modes, and
        # shuffling cost test IoU there; benchmarks/README.md, "Fine-tuning on a new imaging mode").
        self.shuffle_channels = CheckBox(
            text="shuffle colour channels", value=bool(_POLICY.channel_permutation)
        )
        # A short text keeps the dock narrow (the long one clipped the form at 380 px).
        self.shuffle_channels.tooltip = "for stains that vary between images (red vs magenta)"
        self.device = ComboBox(label="device", choices=list(DEVICE_CHOICES), value="auto")
        self.folder = FileEdit(
            label="models folder", mode=FileDialogMode.EXISTING_DIRECTORY, value=MODELS.folder
        )
        self.version = ComboBox(label="version", choices=self._version_choices)
        self.use_button = PushButton(text="Use this version")
        self.active = Label(value="")
        self.outcome = Label(value="")
        self.outcome.native.setWordWrap(True)
        self.run_button, self.cancel_button, buttons = run_buttons("Fine-tune")
        versions = button_row(self.version, self.use_button)
        self.export = ModelExportPanel(self.chosen_model_path)
        super().__init__(
            widgets=[
                self.layers,
                self.edits,
                self.mark_button,
                self.suggest,
                self.seconds,
                self.steps,
                self.learning_rate,
                self.crop,
                self.batch,
                self.scale,
                self.trainable,
                self.corrected_only,
                self.shuffle_channels,
                self.device,
                buttons,
                self.outcome,
                self.folder,
                versions,
                self.active,
                self.export,
            ]
        )
        self.plot = LossPlot(unit="s")
        self.native.layout().insertWidget(13, self.plot)
        self.runner = JobRunner("Fine-tune", parent=self.native)
        connect_runner(self.runner, self.run_button, self.cancel_button, self.run)
        self.cancel_button.changed.connect(self._cancelled)
        self.runner.running.connect(self._set_running)
        # One job at a time: ranking and fine-tuning would compete for the CPU and the model.
        self.suggest.runner.running.connect(lambda on: setattr(self.run_button, "enabled", not on))
        self._kept = ""
        self.mark_button.changed.connect(self.mark_checked)
        self.use_button.changed.connect(self.use_version)
        self.folder.changed.connect(lambda value: MODELS.set_folder(value))
        self.layers.changed.connect(self._update_edits)
        MODELS.changed.connect(self._refresh_versions)
        self.native.destroyed.connect(lambda: MODELS.changed.disconnect(self._refresh_versions))
        watch_layer_list(viewer, self._refresh_layers)
        viewer.dims.events.current_step.connect(self._update_edits)
        self._refresh_layers()
        self._refresh_versions()

    # ---------------------------------------------------------------- choices and status
    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return layer_choices(self._viewer, Labels, plugin_only=True)

    def _version_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        try:
            versions = MODELS.store.versions()
        except FcnsegError:
            return []
        return [
            # version and month-day: short enough not to be cut in a narrow dock
            (f"{v.version}  {v.created[5:10]}", v.version)
            for v in reversed(versions)
        ]

    def _refresh_layers(self, _event: Any = None) -> None:
        before = list(self.layers.value)
        self.layers.reset_choices()
        if not before and self.layers.choices:
            self.layers.value = [self.layers.choices[-1]]
        watch_edits(self.layers.choices, self._on_layer_edit)
        self._update_edits()

    def _on_layer_edit(self, event: Any = None) -> None:
        # Learn from whichever labels a person corrects: an edited layer joins the choice
        # (e.g. painting on "labels CRF" while "labels" was chosen).
        layer = getattr(event, "source", None)
        if isinstance(layer, Labels) and layer in self.layers.choices:
            if layer not in self.layers.value and has_corrections(layer):
                self.layers.value = [*self.layers.value, layer]
        self._update_edits()

    def _refresh_versions(self) -> None:
        if chosen_path(self.folder) != MODELS.folder:
            self.folder.value = MODELS.folder
        self.version.reset_choices()
        try:
            active = MODELS.store.active
        except FcnsegError as exc:
            self.active.value = str(exc)[:80]
            return
        if active is not None:
            self.version.value = active
        self.active.value = f"active model: {active}" if active else "no fine-tuned model yet"

    def _update_edits(self, _event: Any = None) -> None:
        parts = []
        for layer in self.layers.value:
            record = record_of(layer)
            if record is None or record.prediction.shape != layer.data.shape:
                continue
            changed = changed_slices(record.prediction, np.asarray(layer.data))
            if record.is_stack:
                parts.append(
                    f"{layer.name}: changed slices {_list(changed)}, "
                    f"checked {_list(sorted(record.checked))}"
                )
            else:
                state = "changed" if changed else "unchanged"
                parts.append(f"{layer.name}: {state}{', checked' if record.checked else ''}")
        self.edits.value = "\n".join(parts) or "segment an image and correct its labels"

    def _set_running(self, running: bool) -> None:
        # The Run and Cancel buttons are switched by connect_runner.
        self.use_button.enabled = not running
        self.suggest.suggest_button.enabled = not running

    # ---------------------------------------------------------------- actions
    def mark_checked(self) -> None:
        """Mark (or unmark) the shown slice of the active labels layer as checked."""
        active = self._viewer.layers.selection.active
        layer = active if record_of(active) is not None else None
        if layer is None and self.layers.value:
            layer = self.layers.value[0]
        record = record_of(layer)
        if layer is None or record is None:
            show_error("no labels to mark: select a labels layer made by Segment")
            return
        z = current_slice(self._viewer, layer)
        if z in record.checked:
            record.checked.discard(z)
        else:
            record.checked.add(z)
        self._update_edits()

    def use_version(self) -> None:
        """Make the chosen version the active model (the **Use this version** button)."""
        try:
            if self.version.value is None:
                raise InputError(
                    f"no model version in {MODELS.folder} yet: fine-tune a model first, or "
                    "choose the folder that holds your models"
                )
            MODELS.store.activate(str(self.version.value))
        except FcnsegError as exc:
            show_error(str(exc))
            return
        MODELS.changed.emit()
        show_info(f"model {self.version.value} is now the active model")

    def chosen_model_path(self) -> Path:
        """Return the chosen version's model file, or the bundled model when there is none."""
        if self.version.value is not None:
            return MODELS.store.path(str(self.version.value))
        bundled = default_model_path()
        if bundled is None:
            raise InputError("no model version to export yet: fine-tune a model first")
        return bundled

    def settings(self) -> FineTuneSettings:
        """Return the fine-tune policy's settings as the form sets them."""
        return FineTuneSettings(
            max_seconds=float(self.seconds.value),
            max_steps=int(self.steps.value) or None,
            batch_size=int(self.batch.value),
            crop=int(self.crop.value),
            scale=float(self.scale.value) or None,
            learning_rate=float(self.learning_rate.value),
            trainable=str(self.trainable.value),
            corrected_only=bool(self.corrected_only.value),
            channel_permutation=bool(self.shuffle_channels.value),
            device=str(self.device.value),
        )

    def run(self) -> None:
        """Start a round of fine-tuning (the **Fine-tune** button)."""
        try:
            layers = list(self.layers.value)
            if not layers:
                raise InputError(
                    "no edited labels chosen: run Segment, correct the labels, then pick the "
                    "labels layer under 'edited labels'"
                )
            samples = [s for layer in layers for _, s in layer_samples(self._viewer, layer)]
            record = record_of(layers[0])
            recorded = record.model if record is not None else ""
            names = ", ".join(layer.name for layer in layers)
            base_model(recorded, MODELS.store)  # says now when there is no model to start from
            self._kept = MODELS.store.active or "the bundled model"
            job = correction_round(
                MODELS.store,
                samples,
                self.settings(),
                recorded_model=recorded,
                note=f"fine-tuned on the corrections so far, latest from {names}",
            )
        except FcnsegError as exc:
            show_error(str(exc))
            return
        self.plot.clear()
        self.outcome.value = "fine-tuning: scoring the current model on held-out pixels first"
        self.runner.start(job, on_result=self._finished, on_event=self._on_progress)

    def _cancelled(self) -> None:
        message = f"cancelled: {self._kept} kept"
        self.outcome.value = message
        show_info(message)

    def _on_progress(self, event: Progress) -> None:
        validating = event.info.get("phase") == "validate"  # repeats the step's loss
        loss = None if validating else event.info.get("loss")
        iou = event.info.get("val_iou")
        if validating and event.step == 0 and iou is not None:
            self.plot.set_baseline(iou)  # the start: candidate zero
        if loss is not None or iou is not None:
            self.plot.add(float(event.info.get("elapsed", event.step)), loss, iou)

    def _finished(self, out: RoundResult) -> None:
        MODELS.changed.emit()
        message = out.message()
        self.outcome.value = message
        show_info(message)


def _list(values: list[int]) -> str:
    return ", ".join(map(str, values)) if values else "none"
