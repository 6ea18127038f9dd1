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
from qtpy.QtCore import QTimer
from qtpy.QtGui import QShowEvent
from qtpy.QtWidgets import QDockWidget, QGroupBox, QMainWindow, QScrollArea, QVBoxLayout, QWidget

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


#: Width of both docks: the widest form (Fine-tune, with its vertical scroll bar) fits without
#: scrolling sideways, and as tabs the two docks share one width.
DOCK_WIDTH = 360


class _PluginDock(QWidget):
    """A dock of this plugin that opens as a tab beside the plugin's other dock.

    napari stacks a second dock under the first in the right-hand area, which left the
    Fine-tune and Export dock a strip of under 100 px; as tabs, each gets the full height.
    """

    _tabified = False

    def showEvent(self, event: QShowEvent | None) -> None:
        super().showEvent(event)
        if not self._tabified:
            self._tabified = True
            QTimer.singleShot(0, self._join_siblings)

    def _join_siblings(self) -> None:
        mine = _dock_of(self)
        window = mine.parent() if mine is not None else None
        if mine is None or not isinstance(window, QMainWindow):
            return
        for other in window.findChildren(QDockWidget):
            child = other.widget()
            found = child if isinstance(child, _PluginDock) else None
            if found is None and child is not None:
                found = next(iter(child.findChildren(_PluginDock)), None)
            if other is not mine and found is not None and other.isVisible():
                if window.dockWidgetArea(other) == window.dockWidgetArea(mine):
                    window.tabifyDockWidget(other, mine)
                    mine.raise_()
                return


def _dock_of(widget: QWidget) -> QDockWidget | None:
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


class SegmentDock(_PluginDock):
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
        self.setMinimumWidth(DOCK_WIDTH)


class TrainDock(_PluginDock):
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
        self.setMinimumWidth(DOCK_WIDTH)
