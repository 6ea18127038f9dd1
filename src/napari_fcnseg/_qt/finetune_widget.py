"""The **Fine-tune** form: learn from the slices a person corrected or checked.

The Labels layers the plugin wrote remember the prediction (see ``core/edits.py``), so the form
knows which pixels and slices were changed; slices can also be marked as checked. Training runs
in a worker with a live loss/IoU plot. The trained model is saved as the next version of the
models folder (``model/store.py``) and becomes the active one only when training ends normally:
Cancel keeps the previous model. Any earlier version can be made active again.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
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
from ..model.checkpoint import load_model
from ..model.default import default_model_path
from ..model.store import ModelStore
from ..training.samples import TrainingSample
from ..training.trainer import TrainConfig, TrainResult, fit
from .forms import button_row, chosen_path, connect_runner, run_buttons, watch_layer_list
from .layers import current_slice, layer_choices, layer_samples, record_of
from .loss_plot import LossPlot
from .shared import MODELS
from .workers import JobRunner

if TYPE_CHECKING:
    import napari

#: With fewer annotated slices than this, validation uses the training slices themselves.
MIN_SLICES_FOR_VALIDATION = 4


@dataclass
class FineTuneResult:
    """What a Fine-tune job returns: the trained model's store version (not yet active)."""

    version: str
    result: TrainResult


def finetune_job(
    model_path: Path,
    train: list[TrainingSample],
    val: list[TrainingSample],
    config: TrainConfig,
    store: ModelStore,
    note: str,
    parent: str,
) -> Generator[Progress, None, FineTuneResult]:
    """Load the base model, fit it, and save the result as a new (inactive) store version."""
    yield Progress(0, config.max_steps or 0, "loading the model")
    model = load_model(model_path)
    result = yield from fit(model, train, val, config, provenance={"fine_tuned_from": parent})
    version = store.add(result.model, note, parent=parent, activate=False)
    return FineTuneResult(version, result)


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
        self.steps = SpinBox(label="steps", min=1, max=100_000, value=200)
        self.learning_rate = FloatSpinBox(
            label="learning rate", min=1e-6, max=1.0, step=1e-4, value=3e-4
        )
        self.learning_rate.native.setDecimals(6)
        # Smaller crops and a larger batch learned a new imaging mode faster on 2 CPU cores
        # (96 px x 8: test IoU 0.93 in 120 s against 0.88 with 256 px x 4; README, "Fine-tuning
        # on a new imaging mode"); 256 x 4 stays the default for corrections of egg chambers,
        # which are larger than 96 px.
        self.crop = SpinBox(label="crop (px)", min=32, max=1024, step=16, value=256)
        self.batch = SpinBox(label="batch", min=1, max=64, value=4)
        # The working scale (README, "Working scale"); 0 shows "model's own": keep the scale of
        # the model being fine-tuned.
        self.scale = FloatSpinBox(label="scale", min=0.0, max=4.0, step=0.25, value=0.0)
        self.scale.native.setSpecialValueText("model's own")
        self.scale.tooltip = (
            "resize images by this factor before the network (0.5: objects large in pixels; "
            "4x the context and 4x faster); the fine-tuned model keeps it"
        )
        self.corrected_only = CheckBox(text="learn only near corrected pixels", value=False)
        # Off by default: on a new imaging mode (synthetic H&E) shuffling cost 0.06 test IoU
        # (0.852 -> 0.793 after 300 steps, benchmarks/bench_quality.py settings).
        self.shuffle_channels = CheckBox(
            text="shuffle colour channels (when stains vary between images)", value=False
        )
        self.device = ComboBox(label="device", choices=list(DEVICE_CHOICES), value="auto")
        self.folder = FileEdit(
            label="models folder", mode=FileDialogMode.EXISTING_DIRECTORY, value=MODELS.folder
        )
        self.version = ComboBox(label="version", choices=self._version_choices)
        self.use_button = PushButton(text="Use this version")
        self.active = Label(value="")
        self.run_button, self.cancel_button, buttons = run_buttons("Fine-tune")
        versions = button_row(self.version, self.use_button)
        super().__init__(
            widgets=[
                self.layers,
                self.edits,
                self.mark_button,
                self.steps,
                self.learning_rate,
                self.crop,
                self.batch,
                self.scale,
                self.corrected_only,
                self.shuffle_channels,
                self.device,
                buttons,
                self.folder,
                versions,
                self.active,
            ]
        )
        self.plot = LossPlot()
        self.native.layout().insertWidget(11, self.plot)
        self.runner = JobRunner("Fine-tune", parent=self.native)
        connect_runner(self.runner, self.run_button, self.cancel_button, self.run)
        self.runner.running.connect(self._set_running)
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
            (f"{v.version}  {v.created[:16].replace('T', ' ')}", v.version)
            for v in reversed(versions)
        ]

    def _refresh_layers(self, _event: Any = None) -> None:
        before = list(self.layers.value)
        self.layers.reset_choices()
        if not before and self.layers.choices:
            self.layers.value = [self.layers.choices[-1]]
        for layer in self.layers.choices:
            if not isinstance(layer, Labels):  # never: the choices are Labels layers
                continue
            layer.events.labels_update.connect(self._update_edits)
            layer.events.paint.connect(self._update_edits)
            layer.events.data.connect(self._update_edits)
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

    def config(self) -> TrainConfig:
        """Training settings from the form."""
        steps = int(self.steps.value)
        return TrainConfig(
            max_steps=steps,
            batch_size=int(self.batch.value),
            crop=int(self.crop.value),
            scale=float(self.scale.value) or None,
            learning_rate=float(self.learning_rate.value),
            corrected_only=bool(self.corrected_only.value),
            channel_permutation=bool(self.shuffle_channels.value),
            validate_every=max(1, min(25, steps // 4)),
            patience=10,
            device=str(self.device.value),
        )

    def _base_model(self, layer: Labels) -> tuple[Path, str]:
        record = record_of(layer)
        if record is not None and record.model and Path(record.model).is_file():
            path = Path(record.model)
        else:
            store = MODELS.store
            if store.active is not None:
                path = store.path()
            elif (bundled := default_model_path()) is not None:
                path = bundled
            else:
                raise InputError(
                    f"the model that segmented '{layer.name}' is unknown or gone; segment the "
                    "image again with a model file, then fine-tune"
                )
        parent = path.stem if path.parent == MODELS.folder else path.name
        return path, parent

    def run(self) -> None:
        """Start fine-tuning (the **Fine-tune** button)."""
        try:
            layers = list(self.layers.value)
            if not layers:
                raise InputError(
                    "no edited labels chosen: run Segment, correct the labels, then pick the "
                    "labels layer under 'edited labels'"
                )
            samples = [s for layer in layers for _, s in layer_samples(self._viewer, layer)]
            if not samples:
                raise InputError(
                    "nothing to learn from yet: correct some labels (or mark a slice as "
                    "checked) in the chosen layers"
                )
            path, parent = self._base_model(layers[0])
            enough = len(samples) >= MIN_SLICES_FOR_VALIDATION
            val = samples[::MIN_SLICES_FOR_VALIDATION] if enough else []
            train = [s for s in samples if all(s is not v for v in val)]
            names = ", ".join(layer.name for layer in layers)
            note = f"fine-tuned on {len(samples)} slice(s) of {names}"
            store = MODELS.store
            job = finetune_job(path, train, val, self.config(), store, note, parent)
        except FcnsegError as exc:
            show_error(str(exc))
            return
        self.plot.clear()
        self.runner.start(job, on_result=self._finished, on_event=self._on_progress)

    def _on_progress(self, event: Progress) -> None:
        validating = event.info.get("phase") == "validate"  # repeats the step's loss
        loss = None if validating else event.info.get("loss")
        if loss is not None or event.info.get("val_iou") is not None:
            self.plot.add(event.step, loss, event.info.get("val_iou"))

    def _finished(self, out: FineTuneResult) -> None:
        MODELS.store.activate(out.version)
        MODELS.changed.emit()
        iou = out.result.best_val_iou
        score = f", validation IoU {iou:.3f}" if iou is not None else ""
        show_info(f"model {out.version} is now the active model ({out.result.steps} steps{score})")


def _list(values: list[int]) -> str:
    return ", ".join(map(str, values)) if values else "none"
