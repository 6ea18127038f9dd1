"""The default model shipped inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import ModelFileError

DEFAULT_MODEL_NAME = "egg_chambers.safetensors"


def default_model_path() -> Path | None:
    """Path of the bundled default model, or ``None`` when this install has none."""
    candidate = Path(str(resources.files("napari_fcnseg") / "models" / DEFAULT_MODEL_NAME))
    return candidate if candidate.is_file() else None


def resolve_model_path(path: str | Path | None) -> Path:
    """Return the model file to use: ``path``, or the bundled one for ``None``/``"default"``."""
    if path is not None and str(path) != "default":
        return Path(path)
    bundled = default_model_path()
    if bundled is None:
        raise ModelFileError(
            "this install has no bundled default model: choose a model file (--model PATH) "
            "written by napari-fcnseg (.safetensors)"
        )
    return bundled
