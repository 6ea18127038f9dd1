"""The **Refine with CRF** form: a Labels layer (+ its image) -> a refined Labels layer.

It starts from the class probabilities the last **Segment** kept with the labels, or, for labels
a person drew or edited, from soft labels made from them. The result goes to a new layer
"<labels> CRF" (reused while unedited); **Show before CRF** flips between it and the input.
For a stack, "3D CRF" runs one CRF over the volume with the z-spacing taken from the layer's
scale; otherwise slices are refined one by one. When Segment made objects of the image
("<image> objects"), they are split again from the refined labels, whose edges are closer to
the chambers' (``benchmarks/README.md``, "Egg chambers as objects").
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_warning

from ..core.crf import DEFAULTS, iter_refine_with_crf
from ..core.edits import PredictionRecord, is_edited, soft_labels
from ..core.instances import measured_objects
from ..core.predict import probabilities_to_labels
from ..core.progress import Progress
from ..errors import FcnsegError, InputError
from .forms import connect_runner, refresh_layer_combos, run_buttons, watch_layer_list
from .layers import (
    OBJECTS_KEY,
    image_data,
    layer_choices,
    record_of,
    write_labels,
    write_objects,
)
from .workers import JobRunner

if TYPE_CHECKING:
    import napari

PROBABILITIES, SOFT_LABELS = "probabilities", "labels"


#: The texts of the before/after button: it names what pressing it will show.
SHOW_BEFORE, SHOW_AFTER = "Show before CRF", "Show after CRF"


@dataclass
class CrfResult:
    """What the worker returns: refined probabilities and labels, and the objects if asked."""

    probabilities: np.ndarray
    labels: np.ndarray
    objects: np.ndarray | None = None
    table: dict[str, np.ndarray] | None = None


def crf_job(
    image: Any,
    probabilities: np.ndarray,
    params: dict[str, Any],
    *,
    objects: bool = False,
    fill_holes: bool = False,
) -> Generator[Progress, None, CrfResult]:
    """Refine ``probabilities``; with ``objects``, also split and measure the refined labels.

    ``fill_holes``: fill the holes of the refined foreground, as Segment did (its record says).
    """
    refined = yield from iter_refine_with_crf(np.asarray(image), probabilities, **params)
    result = CrfResult(refined, probabilities_to_labels(refined, fill_holes=fill_holes))
    if objects:
        yield Progress(0, 0, "splitting the objects")
        result.objects, result.table = measured_objects(result.labels, image)
    return result


class CrfWidget(Container):
    """Refine a Labels layer with a dense CRF.

    Parameters
    ----------
    viewer
        The napari viewer.
    """

    def __init__(self, viewer: napari.Viewer):
        self._viewer = viewer
        self.labels_layer = ComboBox(label="labels", choices=self._labels_choices, nullable=True)
        self.image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self.start_from = ComboBox(
            label="start from",
            choices=[("model probabilities", PROBABILITIES), ("the labels (soft)", SOFT_LABELS)],
            value=PROBABILITIES,
        )
        self.iterations = SpinBox(label="iterations", min=0, max=50, value=DEFAULTS["iterations"])
        self.gaussian_sxy = _float("smoothness sigma (px)", DEFAULTS["gaussian_sxy"])
        self.gaussian_compat = _float("smoothness weight", DEFAULTS["gaussian_compat"])
        self.bilateral_sxy = _float("appearance sigma (px)", DEFAULTS["bilateral_sxy"])
        self.bilateral_srgb = _float("colour sigma (0-255)", DEFAULTS["bilateral_srgb"])
        self.bilateral_compat = _float("appearance weight", DEFAULTS["bilateral_compat"])
        # A short text keeps the dock narrow enough not to scroll sideways (tests/_qt).
        self.volume = CheckBox(text="3D CRF on the stack", value=False)
        self.volume.tooltip = (
            "One CRF over the whole stack, with the z-spacing taken from the layer's scale"
        )
        self.spacing_info = Label(value="")
        self.run_button, self.cancel_button, buttons = run_buttons("Refine with CRF")
        self.before = PushButton(text=SHOW_BEFORE, enabled=False)
        self.before.native.setCheckable(True)
        super().__init__(
            widgets=[
                self.labels_layer,
                self.image,
                self.start_from,
                self.iterations,
                self.gaussian_sxy,
                self.gaussian_compat,
                self.bilateral_sxy,
                self.bilateral_srgb,
                self.bilateral_compat,
                self.volume,
                self.spacing_info,
                buttons,
                self.before,
            ]
        )
        self.runner = JobRunner("Refine with CRF", parent=self.native)
        connect_runner(self.runner, self.run_button, self.cancel_button, self.run)
        self.before.native.toggled.connect(self.show_before)
        self.labels_layer.changed.connect(self._on_labels_changed)
        self.volume.changed.connect(self._update_spacing_info)
        self._pair: tuple[Labels, Labels] | None = None
        self._shown: Labels | None = None
        self._outputs: list[Labels] = []
        self._writing = False
        watch_layer_list(viewer, self._refresh_layers)
        viewer.layers.events.inserted.connect(self._on_inserted)
        self._refresh_layers()

    # ---------------------------------------------------------------- choices
    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return layer_choices(self._viewer, Labels)

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return layer_choices(self._viewer, Image)

    def _refresh_layers(self, _event: Any = None) -> None:
        refresh_layer_combos(self.labels_layer, self.image)
        self._outputs = [out for out in self._outputs if out in self._viewer.layers]
        if self._pair and any(layer not in self._viewer.layers for layer in self._pair):
            self._pair = None
            self.before.enabled = False
        self._on_labels_changed()

    def _on_inserted(self, event: Any) -> None:
        # Offer the newest Segment result, but not this form's own output.
        layer = event.value
        ours = any(layer is out for out in self._outputs)
        if not self._writing and not ours and record_of(layer) is not None:
            self.labels_layer.value = layer

    def _on_labels_changed(self, _value: Any = None) -> None:
        if self.labels_layer.value is self._shown:
            self._update_spacing_info()
            return
        self._shown = self.labels_layer.value
        record = record_of(self.labels_layer.value)
        if record is not None and record.image_name in self._viewer.layers:
            self.image.value = self._viewer.layers[record.image_name]
        has_probs = record is not None and record.probabilities is not None
        self.start_from.value = PROBABILITIES if has_probs else SOFT_LABELS
        self._update_spacing_info()

    def _update_spacing_info(self, _value: Any = None) -> None:
        layer = self.labels_layer.value
        if layer is None or layer.ndim != 3:
            self.volume.enabled = False
            self.spacing_info.value = ""
            return
        self.volume.enabled = True
        z = self.spacing()[0]
        mode = "one 3D CRF" if self.volume.value else "slice by slice"
        self.spacing_info.value = f"z-spacing {z:g} px (layer scale); {mode}"

    # ---------------------------------------------------------------- running
    def spacing(self) -> tuple[float, ...]:
        """Return the labels layer's pixel size relative to its y pixel size, e.g. (4, 1, 1)."""
        scale = [float(s) for s in self.labels_layer.value.scale]
        return tuple(s / scale[-2] for s in scale)

    def params(self) -> dict[str, Any]:
        """Return the CRF parameters as set in the form."""
        layer = self.labels_layer.value
        volume = self.volume.value and layer is not None and layer.ndim == 3
        return {
            "iterations": int(self.iterations.value),
            "gaussian_sxy": float(self.gaussian_sxy.value),
            "gaussian_compat": float(self.gaussian_compat.value),
            "bilateral_sxy": float(self.bilateral_sxy.value),
            "bilateral_srgb": float(self.bilateral_srgb.value),
            "bilateral_compat": float(self.bilateral_compat.value),
            "spacing": self.spacing() if volume else None,
            "device": "auto",
        }

    def _inputs(self) -> tuple[Labels, Image, np.ndarray, PredictionRecord | None]:
        labels, image = self.labels_layer.value, self.image.value
        if labels is None or image is None:
            raise InputError(
                "Refine with CRF needs a labels layer and its image: run Segment first, or "
                "pick a labels layer and an image of the same size"
            )
        record = record_of(labels)
        data = np.asarray(labels.data)
        if self.start_from.value == PROBABILITIES:
            if record is None or record.probabilities is None:
                raise InputError(
                    f"'{labels.name}' has no model probabilities (it was not made by Segment); "
                    "choose 'start from: the labels (soft)'"
                )
            if is_edited(record.prediction, data):
                show_warning(
                    f"'{labels.name}' was edited since Segment; refining the model's "
                    "probabilities ignores the edits (choose 'the labels (soft)' to keep them)"
                )
            return labels, image, record.probabilities, record
        k = max(len(record.class_names) if record else 0, int(data.max(initial=0)) + 1, 2)
        return labels, image, soft_labels(data, k), record

    def run(self) -> None:
        """Start refining (the **Refine with CRF** button)."""
        try:
            labels, image, probs, record = self._inputs()
            pixels, _axes = image_data(image)
            job = crf_job(
                pixels,
                probs,
                self.params(),
                objects=self._has_objects(image),
                fill_holes=bool(record and record.fill_holes),
            )
        except FcnsegError as exc:
            show_error(str(exc))
            return
        self.runner.start(job, on_result=lambda out: self._show(labels, image, record, out))

    def _has_objects(self, image: Image) -> bool:
        """Whether Segment made objects of ``image`` (then the CRF's labels are split too)."""
        name = f"{image.name} objects"
        return name in self._viewer.layers and OBJECTS_KEY in self._viewer.layers[name].metadata

    def _show(
        self,
        source: Labels,
        image: Image,
        record: PredictionRecord | None,
        result: CrfResult,
    ) -> None:
        labels = result.labels
        refined_record = PredictionRecord.from_prediction(
            labels,
            result.probabilities,
            image_name=image.name,
            model=record.model if record else "",
            class_names=record.class_names if record else [],
            fill_holes=bool(record and record.fill_holes),
        )
        self._writing = True
        try:
            refined = write_labels(
                self._viewer, f"{source.name} CRF", labels, refined_record, like=source
            )
        finally:
            self._writing = False
        self._outputs.append(refined)
        if result.objects is not None and result.table is not None:
            write_objects(
                self._viewer, f"{image.name} objects", result.objects, result.table, like=image
            )
        self._pair = (source, refined)
        self.before.enabled = True
        if self.before.native.isChecked():
            self.before.native.setChecked(False)
        self.show_before(False)
        self._viewer.layers.selection.active = refined

    def show_before(self, before: bool) -> None:
        """Show the labels before the CRF (``True``) or after it (``False``)."""
        # The button names what pressing it will show next.
        self.before.text = SHOW_AFTER if before else SHOW_BEFORE
        if self._pair is None:
            return
        source, refined = self._pair
        source.visible, refined.visible = before, not before


def _float(label: str, value: float) -> FloatSpinBox:
    return FloatSpinBox(label=label, value=value, min=0.01, max=1000.0, step=0.5)
