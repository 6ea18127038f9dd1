"""Choice of the torch device."""

from __future__ import annotations

import torch

from ..errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


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
                f"use --device cpu (available: {', '.join(available_devices())})"
            )
        return torch.device(name)
    if kind == "mps":
        if not _mps_available():
            raise InputError(
                f"device 'mps' was asked for but Apple's MPS is not available here; "
                f"use --device cpu (available: {', '.join(available_devices())})"
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
