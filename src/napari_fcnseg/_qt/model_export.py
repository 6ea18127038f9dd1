"""**Export for bioimage.io**, in the Fine-tune form: the chosen version as a model package.

A button asks where to save the ``.zip`` and runs the core's
:func:`~napari_fcnseg.core.bioimageio.iter_export_bioimageio` in a worker (the package is
validated and its test tensors reproduced before it is written), with the synthetic sample
slice as test image. The model exported is the version chosen in the form, or the bundled
model when the models folder has none yet.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path

from magicgui.widgets import Container, Label, PushButton
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog

from .._sample_data import sample_slice_image
from ..core.bioimageio import iter_export_bioimageio, package_texts
from ..core.progress import Progress
from ..errors import FcnsegError
from ..model.checkpoint import load_model
from .workers import JobRunner


def export_job(model_path: Path, out: Path) -> Generator[Progress, None, Path]:
    """Load the model and write its package: the worker's job."""
    yield Progress(0, 0, "loading the model")
    model = load_model(model_path)
    return (
        yield from iter_export_bioimageio(
            model, out, sample_slice_image(), **package_texts(model, model_path), overwrite=True
        )
    )


class ModelExportPanel(Container):
    """The export button and its status line.

    Parameters
    ----------
    model_path
        Returns the model file to export (the chosen version); raises a
        :class:`~napari_fcnseg.errors.FcnsegError` with the reason when there is none.
    """

    def __init__(self, model_path: Callable[[], Path]):
        self._model_path = model_path
        self.button = PushButton(text="Export for bioimage.io…")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.status.visible = False
        super().__init__(widgets=[self.button, self.status], labels=False)
        self.margins = (0, 0, 0, 0)
        self.runner = JobRunner("Export for bioimage.io", parent=self.native)
        self.runner.running.connect(lambda on: setattr(self.button, "enabled", not on))
        self.button.changed.connect(self.ask_and_export)

    def ask_and_export(self) -> None:
        """Ask for the package's path (napari's save dialog), then export."""
        try:
            source = self._model_path()
        except FcnsegError as exc:
            show_error(str(exc))
            return
        # The dialog asks before replacing an existing file, so the export may overwrite it.
        name, _ = QFileDialog.getSaveFileName(
            self.native, "Export for bioimage.io", f"{source.stem}.zip", "bioimage.io (*.zip)"
        )
        if name:
            self.export_to(Path(name))

    def export_to(self, out: Path) -> None:
        """Write the chosen model's package to ``out`` in a worker (replacing ``out``)."""
        try:
            source = self._model_path()
        except FcnsegError as exc:
            show_error(str(exc))
            return
        out = out if out.suffix.lower() == ".zip" else out.with_name(out.name + ".zip")
        self.status.value = f"exporting {source.name} …"
        self.status.visible = True
        self.runner.start(export_job(source, out), on_result=self._done)

    def _done(self, out: Path) -> None:
        message = f"wrote {out} (a bioimage.io package; it passed its own test)"
        self.status.value = message
        show_info(message)
