"""The models shipped inside the package, chosen by name (``--model egg-chambers``).

Every ``models/NAME.safetensors`` in the package is a bundled model, named by its file stem
with ``-`` for ``_`` (``egg_chambers.safetensors`` is ``egg-chambers``), with its model card
beside it (``NAME.md``). ``egg-chambers`` is the default.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import ModelFileError

DEFAULT_MODEL_NAME = "egg_chambers.safetensors"
#: Name of the default bundled model (what ``--model`` means when it is not given).
DEFAULT_MODEL = "egg-chambers"


def _models_folder() -> Path:
    return Path(str(resources.files("napari_fcnseg") / "models"))


def bundled_models() -> dict[str, Path]:
    """Bundled models by name (the default first), e.g. ``{"egg-chambers": Path(...)}``."""
    folder = _models_folder()
    found = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    models = {path.stem.replace("_", "-"): path for path in found}
    if DEFAULT_MODEL in models:
        models = {DEFAULT_MODEL: models.pop(DEFAULT_MODEL), **models}
    return models


def default_model_path() -> Path | None:
    """Path of the bundled default model, or ``None`` when this install has none."""
    return bundled_models().get(DEFAULT_MODEL)


def resolve_model_path(path: str | Path | None) -> Path:
    """Return the model file to use.

    ``path`` may be a file, the name of a bundled model (``egg-chambers``), or ``None`` /
    ``"default"`` for the default bundled model.
    """
    if path is not None and str(path) != "default":
        bundled = bundled_models()
        if str(path) in bundled and not Path(path).exists():
            return bundled[str(path)]
        return Path(path)
    default = default_model_path()
    if default is None:
        raise ModelFileError(
            "this install has no bundled default model: choose a model file (--model PATH) "
            "written by napari-fcnseg (.safetensors)"
        )
    return default
