"""The two dock widgets named in the manifest.

* **Segment and Refine with CRF**: the Segment form above the Refine with CRF form, so the two
  steps a person takes one after the other sit side by side in one dock.
* **Fine-tune and Export**: the Fine-tune form (with its loss plot and model versions) above the
  Export form.

Each form is a magicgui ``Container`` (tests set its sub-widgets and press its buttons); a dock
stacks them in titled group boxes inside a scroll area.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import Container
from qtpy.QtWidgets import QGroupBox, QScrollArea, QVBoxLayout, QWidget

from .crf_widget import CrfWidget
from .export_widget import ExportWidget
from .finetune_widget import FineTuneWidget
from .segment_widget import SegmentWidget

if TYPE_CHECKING:
    import napari


def _stack(parent: QWidget, sections: list[tuple[str, Container]]) -> None:
    inner = QWidget()
    layout = QVBoxLayout(inner)
    layout.setContentsMargins(4, 4, 4, 4)
    for title, form in sections:
        box = QGroupBox(title)
        box_layout = QVBoxLayout(box)
        box_layout.setContentsMargins(2, 6, 2, 2)
        box_layout.addWidget(form.native)
        layout.addWidget(box)
    layout.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(inner)
    outer = QVBoxLayout(parent)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)


class SegmentDock(QWidget):
    """Dock with the **Segment** and **Refine with CRF** forms.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it by this name).
    """

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.segment = SegmentWidget(napari_viewer)
        self.crf = CrfWidget(napari_viewer)
        _stack(self, [("Segment", self.segment), ("Refine with CRF", self.crf)])
        self.setMinimumWidth(300)


class TrainDock(QWidget):
    """Dock with the **Fine-tune** and **Export** forms.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it by this name).
    """

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.finetune = FineTuneWidget(napari_viewer)
        self.export = ExportWidget(napari_viewer)
        _stack(self, [("Fine-tune", self.finetune), ("Export", self.export)])
        self.setMinimumWidth(300)
