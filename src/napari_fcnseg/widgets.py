"""The widgets the napari manifest (``napari.yaml``) names; importing this module imports Qt."""

from __future__ import annotations

from ._qt.crf_widget import CrfWidget
from ._qt.docks import SegmentDock, TrainDock
from ._qt.export_widget import ExportWidget
from ._qt.finetune_widget import FineTuneWidget
from ._qt.segment_widget import SegmentWidget

__all__ = [
    "CrfWidget",
    "ExportWidget",
    "FineTuneWidget",
    "SegmentDock",
    "SegmentWidget",
    "TrainDock",
]
