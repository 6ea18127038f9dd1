"""The names a device or precision setting can take, importable without torch.

The ``fcnseg`` parser and the forms list these choices before anything heavy is loaded;
:mod:`.device` resolves them.
"""

from __future__ import annotations

#: Settings of the device to run on (see :func:`~.device.resolve_device`).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: Settings of the training arithmetic (see :func:`~.device.training_precision`).
PRECISIONS = ("auto", "float32", "bfloat16")
