"""bioimage.io packages (``.zip``) as model files: ours load through their attachment.

A package written by :func:`napari_fcnseg.core.bioimageio.export_bioimageio` carries the
model's ``.safetensors`` file as an attachment; :func:`extracted_model` hands that file to
the usual loader, so ``--model MODEL.zip`` and the Segment form take a package like a model
file, and no code from the package runs. A package from another tool has no such attachment:
:mod:`.foreign` runs it through ``bioimageio.core`` ("What is trusted", docs/trust.md).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ModelFileError

#: Name of our model file inside a package.
ATTACHMENT = "napari_fcnseg_model.safetensors"
_DESCRIPTIONS = ("rdf.yaml", "bioimageio.yaml")


#: How another tool's package is opened: ``loader(path, trust_model_code)`` and
#: ``describer(path)``, registered by ``napari_fcnseg.model`` (lazy wrappers of :mod:`.foreign`),
#: so that :mod:`.checkpoint` dispatches to it without importing it (foreign builds on it).
_FOREIGN: dict[str, Callable[..., Any]] = {}


def register_foreign(loader: Callable[..., Any], describer: Callable[..., Any]) -> None:
    """Register how other tools' packages are loaded and described (see :mod:`.foreign`)."""
    _FOREIGN["load"], _FOREIGN["describe"] = loader, describer


def foreign(kind: str) -> Callable[..., Any]:
    """Return the registered ``"load"`` or ``"describe"`` function for other tools' packages."""
    return _FOREIGN[kind]


def is_bioimageio_package(path: str | os.PathLike[str]) -> bool:
    """Tell whether ``path`` is a ``.zip`` holding a bioimage.io description."""
    path = Path(path)
    if path.suffix.lower() != ".zip" or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith(_DESCRIPTIONS) for n in archive.namelist())
    except zipfile.BadZipFile:
        return False


def weight_formats(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Return the weight formats a package's description lists (``weights`` keys), read cheaply.

    Only the description's YAML is parsed (no validation, no ``bioimageio.spec`` import), so a
    form can ask about trust at once; loading validates the package. Empty when unreadable.
    """
    import yaml

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(_DESCRIPTIONS)), None)
            if name is None:
                return ()
            description = yaml.safe_load(archive.read(name))
    except (zipfile.BadZipFile, OSError, yaml.YAMLError):
        return ()
    weights = description.get("weights") if isinstance(description, dict) else None
    return tuple(str(k) for k, v in weights.items() if v) if isinstance(weights, dict) else ()


def is_our_package(path: str | os.PathLike[str]) -> bool:
    """Tell whether the package at ``path`` carries our model file (we exported it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return ATTACHMENT in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


@contextlib.contextmanager
def extracted_model(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield our model file from the package at ``path``, extracted to a temporary folder."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if ATTACHMENT not in archive.namelist():
                raise ModelFileError(
                    f"{path}: this bioimage.io package was not exported by napari-fcnseg (it "
                    f"has no {ATTACHMENT}); napari-fcnseg runs no model code from packages, so "
                    "run it with the tool it was made for, or with bioimageio.core"
                )
            data = archive.read(ATTACHMENT)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path} is not a readable zip file ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="fcnseg-bmz-") as tmp:
        target = Path(tmp) / ATTACHMENT
        target.write_bytes(data)
        yield target
