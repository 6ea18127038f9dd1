"""napari-fcnseg: U-Net + CRF-as-RNN segmentation of microscopy scans, with fine-tuning.

The names exported here form the GUI-free API: importing this package imports neither Qt nor
napari.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import FcnsegError, InputError, ModelFileError, OutputExistsError

__all__ = [
    "FcnsegError",
    "InputError",
    "ModelFileError",
    "OutputExistsError",
    "__version__",
]
