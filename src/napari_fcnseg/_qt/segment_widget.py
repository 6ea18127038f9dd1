"""The **Segment** form: image + model + device + tile size -> a Labels layer.

The prediction runs in a worker (:class:`~._qt.workers.JobRunner`); the result is written with
:func:`~._qt.layers.write_labels`, which keeps the class probabilities in the layer's metadata
for **Refine with CRF** and never overwrites a layer someone has edited.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, SpinBox
from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QMessageBox

from ..core.device import DEVICE_CHOICES
from ..core.edits import PredictionRecord
from ..core.instances import measured_objects
from ..core.predict import DEFAULT_TILE, predict_probabilities, probabilities_to_labels
from ..core.progress import Progress
from ..core.uncertainty import entropy_uncertainty
from ..errors import FcnsegError, InputError, ModelFileError
from ..model.checkpoint import load_model, read_model_info
from ..model.default import DEFAULT_MODEL as DEFAULT_BUNDLED
from ..model.default import bundled_models, default_model_path, resolve_model_path
from ..model.foreign import code_formats
from ..model.package import is_bioimageio_package, is_our_package
from .forms import chosen_path, connect_runner, refresh_layer_combos, run_buttons, watch_layer_list
from .layers import (
    current_slice,
    image_data,
    is_stack,
    layer_choices,
    write_labels,
    write_objects,
    write_uncertainty,
)
from .shared import MODELS
from .workers import JobRunner

if TYPE_CHECKING:
    import napari

#: Value of the model choice that means "the file chosen below".
MODEL_FILE = "file"
DEFAULT_MODEL = "default"
#: Prefix of the choices that stand for a bundled model other than the default.
BUNDLED = "bundled:"
WHOLE, CURRENT_SLICE = "whole", "slice"


@dataclass
class SegmentResult:
    """What a Segment job returns."""

    labels: np.ndarray
    probabilities: np.ndarray
    class_names: list[str]
    model: str
    #: Per-pixel normalised entropy (0 sure, 1 undecided) when asked for, else ``None``.
    uncertainty: np.ndarray | None = None
    #: One label per object (egg chamber) and its measurements, when asked for.
    objects: np.ndarray | None = None
    table: dict[str, np.ndarray] | None = None
    #: The holes of the foreground were filled (the record says so, for Refine with CRF).
    fill_holes: bool = False


def segment_job(
    model_path: Path,
    image: Any,
    axes: str,
    *,
    z: int | None,
    tile: int,
    device: str,
    source: str = "image",
    uncertainty: bool = False,
    objects: bool = False,
    fill_holes: bool | None = None,
    trust_model_code: bool = False,
) -> Generator[Progress, None, SegmentResult]:
    """Load the model and predict the image (or its slice ``z``): the worker's job.

    ``source`` names the image in error messages (e.g. ``"image layer 'cells'"``); with
    ``uncertainty`` the result also holds the per-pixel uncertainty, with ``objects`` one label
    per egg chamber and the objects' measurements (all computed in the worker); ``fill_holes``
    fills the holes of the foreground (``None``: as the model's file says);
    ``trust_model_code`` lets another tool's package run its code (the user said yes).
    """
    yield Progress(0, 0, "loading the model")
    model = load_model(model_path, trust_model_code=trust_model_code)
    if z is not None:
        image, axes = image[z], axes[1:]
        source = f"{source}, slice {z}"
    probs = yield from predict_probabilities(
        model, image, axes=axes, tile=tile, device=device, source=source
    )
    fill = model.info.fill_holes if fill_holes is None else fill_holes
    labels = probabilities_to_labels(probs, fill_holes=fill)
    unsure = entropy_uncertainty(probs) if uncertainty else None
    names = list(model.info.class_names)
    result = SegmentResult(labels, probs, names, str(model_path), unsure, fill_holes=fill)
    if objects:
        yield Progress(0, 0, "splitting the objects")
        result.objects, result.table = measured_objects(labels, image)
    return result


class SegmentWidget(Container):
    """Segment an Image layer with a model; the labels appear as "<image> labels".

    Parameters
    ----------
    viewer
        The napari viewer.
    """

    def __init__(self, viewer: napari.Viewer):
        self._viewer = viewer
        #: Packages the user agreed to run the code of, this session.
        self._trusted: set[Path] = set()
        self.image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self.scope = ComboBox(
            label="run on",
            choices=[("whole image or stack", WHOLE), ("current slice", CURRENT_SLICE)],
            value=WHOLE,
        )
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.model_file = FileEdit(
            label="model file", mode=FileDialogMode.EXISTING_FILE, filter="*.safetensors *.zip"
        )
        self.device = ComboBox(label="device", choices=list(DEVICE_CHOICES), value="auto")
        self.tile = SpinBox(label="tile size", min=64, max=8192, step=64, value=DEFAULT_TILE)
        self.uncertainty = CheckBox(text="show uncertainty", value=False)
        self.objects = CheckBox(text="objects (one label per chamber)", value=False)
        self.fill_holes = CheckBox(text="fill holes (solid objects)", value=False)
        self.fill_holes.tooltip = (
            "Give background enclosed by an object to the object (egg chambers are solid); "
            "set to what the chosen model's file says when you choose it"
        )
        self.objects.tooltip = (
            "Also add a Labels layer with one label per egg chamber (touching chambers split "
            "at the gap); hovering shows each one's area, axes and mean intensity"
        )
        self.uncertainty.tooltip = (
            "Also add an image of how unsure the model is per pixel (0 sure, 1 undecided): "
            "bright where a correction would teach it most"
        )
        self.run_button, self.cancel_button, buttons = run_buttons("Segment")
        super().__init__(
            widgets=[
                self.image,
                self.scope,
                self.model,
                self.model_file,
                self.device,
                self.tile,
                self.uncertainty,
                self.objects,
                self.fill_holes,
                buttons,
            ]
        )
        self.runner = JobRunner("Segment", parent=self.native)
        connect_runner(self.runner, self.run_button, self.cancel_button, self.run)
        self.model.changed.connect(self._on_model_changed)
        self.model_file.changed.connect(self._follow_model)
        self.model.tooltip = (
            "A fine-tuned version from the models folder, the bundled model, or a file"
        )
        self.tile.tooltip = "Largest tile sent to the network; smaller tiles use less memory"
        watch_layer_list(viewer, self._refresh_layers)
        MODELS.changed.connect(self._refresh_models)
        self.native.destroyed.connect(lambda: MODELS.changed.disconnect(self._refresh_models))
        self._refresh_models()
        self._refresh_layers()

    # ---------------------------------------------------------------- choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return layer_choices(self._viewer, Image)

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        choices: list[tuple[str, str]] = []
        try:
            store = MODELS.store
            active, versions = store.active, store.versions()
        except FcnsegError:
            active, versions = None, []
        for entry in reversed(versions):
            flag = " (active)" if entry.version == active else ""
            note = f" - {entry.note[:40]}" if entry.note else ""
            choices.append((f"{entry.version}{flag}{note}", entry.version))
        for name in bundled_models():  # the default first, under the value "default"
            value = DEFAULT_MODEL if name == DEFAULT_BUNDLED else f"{BUNDLED}{name}"
            flag = " (default)" if name == DEFAULT_BUNDLED else ""
            choices.append((f"bundled: {name}{flag}", value))
        choices.append(("model file...", MODEL_FILE))
        return choices

    def _refresh_layers(self, _event: Any = None) -> None:
        refresh_layer_combos(self.image)

    def _refresh_models(self) -> None:
        self.model.reset_choices()
        try:
            active = MODELS.store.active
        except FcnsegError:
            active = None
        values = self.model.choices
        self.model.value = active if active in values else values[0]
        self._on_model_changed()

    def _on_model_changed(self, _value: Any = None) -> None:
        self.model_file.visible = self.model.value == MODEL_FILE
        self._follow_model()

    def _follow_model(self, _value: Any = None) -> None:
        """Set *fill holes* to what the chosen model's file says (left as it is if unreadable)."""
        try:
            path = self.model_path()
            if is_bioimageio_package(path) and not is_our_package(path):
                self.fill_holes.value = False  # another tool's package: nothing to say
            else:
                self.fill_holes.value = read_model_info(path).fill_holes
        except (FcnsegError, OSError):
            pass

    # ---------------------------------------------------------------- running
    def model_path(self) -> Path:
        """Return the model file the current choice stands for."""
        choice = self.model.value
        if choice == DEFAULT_MODEL:
            path = default_model_path()
            if path is None:
                raise ModelFileError("the bundled default model is missing from this install")
            return path
        if isinstance(choice, str) and choice.startswith(BUNDLED):
            return resolve_model_path(choice[len(BUNDLED) :])
        if choice == MODEL_FILE:
            chosen = chosen_path(self.model_file)
            if chosen is None or chosen.is_dir():
                raise ModelFileError(
                    "no model file chosen: this install has no bundled default model, so "
                    "choose a .safetensors model file under 'model file' (or pick a fine-tuned "
                    "version from the models folder)"
                    if default_model_path() is None
                    else "no model file chosen: choose a .safetensors file under 'model file'"
                )
            return chosen
        return MODELS.store.path(str(choice))

    def run(self) -> None:
        """Start segmenting the chosen image (the **Segment** button)."""
        layer = self.image.value
        try:
            if layer is None:
                raise InputError(
                    "no image to segment: open one (File > Open, or File > Open Sample > "
                    "napari-fcnseg) and pick it under 'image'"
                )
            data, axes = image_data(layer)
            one_slice = self.scope.value == CURRENT_SLICE and is_stack(layer)
            z = current_slice(self._viewer, layer) if one_slice else None
            model_path = self.model_path()
            formats = code_formats(model_path)
            if formats and model_path not in self._trusted:
                if not self.ask_trust(model_path, formats):
                    show_info(f"not run: {model_path.name} was not trusted")
                    return
                self._trusted.add(model_path)
            job = segment_job(
                model_path,
                data,
                axes,
                z=z,
                tile=int(self.tile.value),
                device=str(self.device.value),
                source=f"image layer {layer.name!r}",
                uncertainty=bool(self.uncertainty.value),
                objects=bool(self.objects.value),
                fill_holes=bool(self.fill_holes.value),
                trust_model_code=bool(formats),
            )
        except FcnsegError as exc:
            show_error(str(exc))
            return
        self.runner.start(job, on_result=lambda result: self._show(layer, z, result))

    def ask_trust(self, path: Path, formats: tuple[str, ...]) -> bool:
        """Ask whether to run a package's code (tests replace this method)."""
        answer = QMessageBox.question(
            self.native,
            "Run this package's code?",
            f"{path.name} is a bioimage.io package from another tool. Its "
            f"{' and '.join(formats)} weights run code from the package on this computer "
            "(unpickling, or its architecture source).\n\nRun it only if you trust where it "
            "came from. Run it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return bool(answer == QMessageBox.StandardButton.Yes)

    def _show(self, layer: Image, z: int | None, result: SegmentResult) -> None:
        common: dict[str, Any] = {
            "image_name": layer.name,
            "model": result.model,
            "class_names": result.class_names,
            "fill_holes": result.fill_holes,
        }
        if z is None:
            record = PredictionRecord.from_prediction(result.labels, result.probabilities, **common)
        else:
            depth = int(layer.data.shape[0])
            record = PredictionRecord.from_slice(
                depth, z, result.labels, result.probabilities, **common
            )
        labels_layer = write_labels(
            self._viewer, f"{layer.name} labels", result.labels, record, like=layer, z=z
        )
        if result.uncertainty is not None:
            write_uncertainty(
                self._viewer,
                f"{layer.name} uncertainty",
                result.uncertainty,
                like=layer,
                z=z,
                depth=None if z is None else int(layer.data.shape[0]),
            )
        if result.objects is not None and result.table is not None:
            write_objects(
                self._viewer,
                f"{layer.name} objects",
                result.objects,
                result.table,
                like=layer,
                z=z,
                depth=None if z is None else int(layer.data.shape[0]),
            )
        self._viewer.layers.selection.active = labels_layer
