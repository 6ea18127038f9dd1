"""The **Export** form: corrected slices -> items of an annotated set on disk.

Every slice a person changed or marked as checked is written to the set (image, labels and the
changed-pixel mask; see ``training/dataset.py``), off the GUI thread. Items that already exist
are only replaced after the person says so (:meth:`ExportWidget.ask_overwrite`). The form shows
the set's size, e.g. "78 images, 3 added today".
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, Label
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QMessageBox

from ..core.progress import Progress
from ..errors import FcnsegError, InputError
from ..training.dataset import AnnotatedSet, safe_item_name
from ..training.samples import TrainingSample, squeeze_channel
from .forms import (
    chosen_path,
    connect_runner,
    refresh_layer_combos,
    run_buttons,
    watch_edits,
    watch_layer_list,
)
from .layers import has_corrections, layer_choices, layer_samples, record_of
from .workers import JobRunner

if TYPE_CHECKING:
    import napari


@dataclass
class ExportItem:
    """One slice to write, with its item name."""

    name: str
    sample: TrainingSample
    slice_index: int | None


def export_job(
    annotated: AnnotatedSet,
    items: list[ExportItem],
    *,
    source: str,
    model_version: str | None,
) -> Generator[Progress, None, int]:
    """Write ``items`` into the set (replacing same-named items); return how many were written."""
    for i, item in enumerate(items):
        annotated.add_item(
            squeeze_channel(item.sample.image),
            item.sample.labels,
            item.sample.corrected,
            name=item.name,
            source=source,
            slice_index=item.slice_index,
            model_version=model_version,
            replace=True,
        )
        yield Progress(i + 1, len(items), f"wrote {item.name}")
    return len(items)


def set_summary(annotated: AnnotatedSet) -> str:
    """E.g. ``"78 images, 3 added today"``."""
    n, today = len(annotated), len(annotated.added_on())
    return f"{n} image{'s' if n != 1 else ''}, {today} added today"


class ExportWidget(Container):
    """Export corrected slices of a Labels layer to an annotated-set folder.

    Parameters
    ----------
    viewer
        The napari viewer.
    """

    def __init__(self, viewer: napari.Viewer):
        self._viewer = viewer
        self.labels_layer = ComboBox(label="labels", choices=self._labels_choices, nullable=True)
        self.folder = FileEdit(label="annotated set", mode=FileDialogMode.EXISTING_DIRECTORY)
        self.summary = Label(value="choose a folder for the annotated set")
        self.run_button, self.cancel_button, buttons = run_buttons("Export")
        super().__init__(widgets=[self.labels_layer, self.folder, self.summary, buttons])
        self.runner = JobRunner("Export", parent=self.native)
        connect_runner(self.runner, self.run_button, self.cancel_button, self.run)
        self.folder.changed.connect(self.update_size)
        watch_layer_list(viewer, self._refresh_layers)
        self._refresh_layers()

    def _labels_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return layer_choices(self._viewer, Labels, plugin_only=True)

    def _refresh_layers(self, _event: Any = None) -> None:
        refresh_layer_combos(self.labels_layer)
        watch_edits([layer for _, layer in self._labels_choices()], self._on_layer_edit)

    def _on_layer_edit(self, event: Any = None) -> None:
        # Export what a person corrects: the layer painted last (e.g. "labels CRF").
        layer = getattr(event, "source", None)
        if isinstance(layer, Labels) and layer is not self.labels_layer.value:
            if has_corrections(layer):
                self.labels_layer.value = layer

    def update_size(self, _value: Any = None) -> None:
        """Show the size of the chosen set."""
        folder = chosen_path(self.folder)
        if folder is None:
            self.summary.value = "choose a folder for the annotated set"
            return
        try:
            self.summary.value = set_summary(AnnotatedSet.open(folder))
        except FcnsegError:
            self.summary.value = "a new set will be created here"

    def ask_overwrite(self, names: list[str]) -> bool:
        """Ask whether to replace existing items (tests replace this method)."""
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        answer = QMessageBox.question(
            self.native,
            "Replace items?",
            f"The annotated set already has {len(names)} of these item(s): {shown}.\n"
            "Replace them with the current labels?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return bool(answer == QMessageBox.StandardButton.Yes)

    def run(self) -> None:
        """Export the corrected slices (the **Export** button)."""
        try:
            layer, folder = self.labels_layer.value, chosen_path(self.folder)
            if layer is None:
                raise InputError("no labels to export: run Segment and correct the labels first")
            if folder is None:
                raise InputError("choose the annotated-set folder to export to")
            record = record_of(layer)
            if record is None:
                raise InputError(
                    f"'{layer.name}' was not made by Segment; segment the image first, correct "
                    "the labels, then export them"
                )
            if not record.class_names:
                raise InputError(f"'{layer.name}' does not name its classes; segment it again")
            samples = layer_samples(self._viewer, layer)
            if not samples:
                raise InputError(
                    f"nothing to export from '{layer.name}': correct some labels or mark "
                    "slices as checked first"
                )
            annotated = AnnotatedSet.create(folder, record.class_names)
            base = safe_item_name(record.image_name)
            stack = record.is_stack
            items = [
                ExportItem(f"{base}_z{z:03d}" if stack else base, s, z if stack else None)
                for z, s in samples
            ]
            existing = [item.name for item in items if item.name in annotated]
            if existing and not self.ask_overwrite(existing):
                items = [item for item in items if item.name not in annotated]
                show_info(f"kept {len(existing)} existing item(s) as they were")
            if not items:
                return
            model = Path(record.model).stem if record.model else None
            job = export_job(annotated, items, source=record.image_name, model_version=model)
        except FcnsegError as exc:
            show_error(str(exc))
            return
        self.runner.start(job, on_result=lambda n: self._done(annotated, n, folder))

    def _done(self, annotated: AnnotatedSet, written: int, folder: Path) -> None:
        self.summary.value = set_summary(annotated)
        show_info(f"exported {written} image(s) to {folder}: {self.summary.value}")
