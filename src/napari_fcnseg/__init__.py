"""napari-fcnseg: U-Net + CRF-as-RNN segmentation of microscopy scans, with fine-tuning.

The names exported here form the GUI-free API: importing this package imports neither Qt nor
napari. Names that need torch are imported on first use, so that napari's plugin discovery,
which imports this package to find the manifest, stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import FcnsegError, InputError, ModelFileError, OutputExistsError

__version__ = "0.1.0"

_LAZY = {
    "refine_with_crf": "napari_fcnseg.core.crf",
    "iter_refine_with_crf": "napari_fcnseg.core.crf",
    "predict_probabilities": "napari_fcnseg.core.predict",
    "predict_slices": "napari_fcnseg.core.predict",
    "probabilities_to_labels": "napari_fcnseg.core.predict",
    "rank_for_annotation": "napari_fcnseg.core.suggest",
    "Suggestion": "napari_fcnseg.core.suggest",
    "run_to_completion": "napari_fcnseg.core.progress",
    "Progress": "napari_fcnseg.core.progress",
    "load_model": "napari_fcnseg.model.checkpoint",
    "save_model": "napari_fcnseg.model.checkpoint",
    "SegmentationModel": "napari_fcnseg.model.checkpoint",
    "UNet": "napari_fcnseg.model.unet",
    "CrfRnn": "napari_fcnseg.model.crf_rnn",
    "read_image": "napari_fcnseg.io.images",
    "read_labels": "napari_fcnseg.io.labels",
    "write_labels": "napari_fcnseg.io.labels",
}

if TYPE_CHECKING:
    from .core.crf import iter_refine_with_crf, refine_with_crf
    from .core.predict import predict_probabilities, predict_slices, probabilities_to_labels
    from .core.progress import Progress, run_to_completion
    from .core.suggest import Suggestion, rank_for_annotation
    from .io.images import read_image
    from .io.labels import read_labels, write_labels
    from .model.checkpoint import SegmentationModel, load_model, save_model
    from .model.crf_rnn import CrfRnn
    from .model.unet import UNet


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'napari_fcnseg' has no attribute {name!r}")


__all__ = [
    "CrfRnn",
    "FcnsegError",
    "InputError",
    "ModelFileError",
    "OutputExistsError",
    "Progress",
    "SegmentationModel",
    "Suggestion",
    "UNet",
    "__version__",
    "iter_refine_with_crf",
    "load_model",
    "predict_probabilities",
    "predict_slices",
    "probabilities_to_labels",
    "rank_for_annotation",
    "read_image",
    "read_labels",
    "refine_with_crf",
    "run_to_completion",
    "save_model",
    "write_labels",
]
