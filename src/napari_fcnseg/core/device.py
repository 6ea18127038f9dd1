"""Choice of the torch device."""

from __future__ import annotations

import torch

from ..errors import InputError
from .choices import DEVICE_CHOICES, PRECISIONS

__all__ = [
    "DEVICE_CHOICES",
    "PRECISIONS",
    "available_devices",
    "resolve_device",
    "training_precision",
]


def training_precision(setting: str, device: torch.device) -> torch.dtype:
    """Return the dtype of the U-Net training steps' autocast for ``setting`` on ``device``.

    ``"auto"`` picks bfloat16 on CUDA devices that support it and on CPUs with native bfloat16
    arithmetic (AVX512-BF16 or AMX); float32 elsewhere (e.g. Apple GPUs, older CPUs, where
    emulated bfloat16 is slower). Where it is native, bfloat16 channels-last steps were the
    fastest (benchmarks/README.md, "Training steps" and "Where a round's 60 s go").
    """
    if setting == "float32":
        return torch.float32
    if setting == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        # Private helpers, present since torch 2.0; without them, stay with float32.
        native = [getattr(torch.cpu, name, None) for name in _NATIVE_BF16_CHECKS]
        if any(check() for check in native if check is not None):
            return torch.bfloat16
    return torch.float32


_NATIVE_BF16_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device to run on.

    ``"auto"`` picks CUDA when available, then Apple's MPS, then the CPU. An explicit device that
    this machine does not have raises :class:`InputError` saying which devices are available.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":", 1)[0]
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {device!r} was asked for but this machine has no usable CUDA GPU; "
                f"choose another device (available here: {', '.join(available_devices())})"
            )
        return torch.device(name)
    if kind == "mps":
        if not _mps_available():
            raise InputError(
                f"device 'mps' was asked for but Apple's MPS is not available here; "
                f"choose another device (available here: {', '.join(available_devices())})"
            )
        return torch.device("mps")
    raise InputError(f"unknown device {device!r}: choose one of {', '.join(DEVICE_CHOICES)}")


def available_devices() -> list[str]:
    """Names of the devices usable on this machine, best first."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return names


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
