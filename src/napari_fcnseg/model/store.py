"""Numbered model versions in a folder the user can see, choose and go back in.

Every fine-tuning run adds a version (``v001``, ``v002``, ...) to a :class:`ModelStore`: a plain
folder of ``.safetensors`` model files plus a small ``index.json`` that lists the versions, their
notes and parents, and which one is *active* (used by default for segmentation and as the
starting point of the next fine-tuning). Nothing is ever deleted: going back means activating an
earlier version. The index is written atomically and re-read on every call, so two viewers on
the same folder see each other's versions; changes to it hold the folder's lock
(:func:`~napari_fcnseg.io.locking.folder_lock`, ``FOLDER/.lock``), so two fine-tunes that end
at once both get their version.

Layout::

    FOLDER/index.json          {"format_version": 1, "active": "v002", "versions": [...]}
    FOLDER/v001.safetensors    self-describing model files (see ``checkpoint.py``)
    FOLDER/v002.safetensors
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelFileError, OutputExistsError
from ..io.atomic import atomic_output, writing_to
from ..io.locking import folder_lock
from .checkpoint import MODEL_SUFFIX, SegmentationModel, load_model, save_model

__all__ = ["ENV_VAR", "INDEX_NAME", "ModelStore", "ModelVersion", "default_store_folder"]

#: Environment variable that overrides the default models folder.
ENV_VAR = "NAPARI_FCNSEG_MODELS"
INDEX_NAME = "index.json"
INDEX_FORMAT = 1
_VERSION = re.compile(r"^v(\d{3,})$")


def default_store_folder() -> Path:
    """Return the models folder to use when none is chosen.

    That is ``$NAPARI_FCNSEG_MODELS`` when set, else ``~/.napari-fcnseg/models``.
    """
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".napari-fcnseg" / "models"


@dataclass(frozen=True)
class ModelVersion:
    """One entry of the store's index.

    Attributes
    ----------
    version
        ``v001``, ``v002``, ...
    file
        File name of the model inside the store folder.
    created
        ISO date and time (UTC) the version was added.
    note
        Free text, e.g. "fine-tuned on 3 edited slices of stack.tif".
    parent
        Version (or model file) it was fine-tuned from, if known.
    """

    version: str
    file: str
    created: str
    note: str = ""
    parent: str | None = None


class ModelStore:
    """A folder of numbered model versions with one active version.

    Parameters
    ----------
    folder
        Where the models live; created on the first :meth:`add`. ``None``:
        :func:`default_store_folder`.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None):
        self.folder = Path(folder).expanduser() if folder is not None else default_store_folder()

    def __repr__(self) -> str:
        return f"ModelStore({str(self.folder)!r})"

    # ------------------------------------------------------------------ reading
    def versions(self) -> list[ModelVersion]:
        """All versions, oldest first."""
        return self._read_index()[1]

    @property
    def active(self) -> str | None:
        """The active version's name, or ``None`` when the store is empty."""
        return self._read_index()[0]

    def __len__(self) -> int:
        return len(self.versions())

    def __contains__(self, version: object) -> bool:
        return any(v.version == version for v in self.versions())

    def get(self, version: str) -> ModelVersion:
        """Return the index entry of ``version``.

        Raises
        ------
        InputError
            When the store has no such version.
        """
        for entry in self.versions():
            if entry.version == version:
                return entry
        known = ", ".join(v.version for v in self.versions()) or "none yet"
        raise InputError(
            f"{self.folder} has no model version {version!r} (versions: {known}); "
            "pick one of those or fine-tune a model first"
        )

    def path(self, version: str | None = None) -> Path:
        """File of ``version`` (default: the active one)."""
        if version is None:
            version = self.active
            if version is None:
                raise ModelFileError(
                    f"the models folder {self.folder} holds no model yet; fine-tune one or "
                    "choose a model file"
                )
        return self.folder / self.get(version).file

    def load(self, version: str | None = None, device: str = "cpu") -> SegmentationModel:
        """Load ``version`` (default: the active one)."""
        return load_model(self.path(version), device=device)

    # ------------------------------------------------------------------ writing
    def add(
        self,
        model: SegmentationModel,
        note: str = "",
        *,
        parent: str | None = None,
        activate: bool = True,
    ) -> str:
        """Save ``model`` as the next version and return its name (e.g. ``"v003"``).

        The version, parent and note are also written into the model file's provenance
        (``store_version``, ``store_parent``, ``store_note``). With
        ``activate`` (the default) the new version becomes the active one; without, the
        active version stays as it was (none in a new folder: the bundled model is used).
        """
        with writing_to(self.folder, "models folder"):
            self.folder.mkdir(parents=True, exist_ok=True)
            with folder_lock(self.folder, what="models folder"):
                return self._add_locked(model, note, parent, activate)

    def _add_locked(
        self, model: SegmentationModel, note: str, parent: str | None, activate: bool
    ) -> str:
        active, versions = self._read_index()
        number = max((_number(v.version) for v in versions), default=0) + 1
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        while True:  # skip numbers whose file exists (e.g. left by a lost index)
            name = f"v{number:03d}"
            file = name + MODEL_SUFFIX
            model.info.provenance.update(
                {"store_version": name, "store_parent": parent, "store_note": note, "saved": now}
            )
            try:
                save_model(model, self.folder / file, overwrite=False)
                break
            except OutputExistsError:
                number += 1
        versions.append(ModelVersion(name, file, now, note, parent))
        self._write_index(name if activate else active, versions)
        return name

    def activate(self, version: str) -> None:
        """Make ``version`` the active one (e.g. to go back to an earlier model)."""
        entry = self.get(version)  # raises a readable error for unknown versions
        if not (self.folder / entry.file).is_file():
            raise ModelFileError(
                f"model file {self.folder / entry.file} of {version} is missing; "
                "restore it or activate another version"
            )
        with folder_lock(self.folder, what="models folder"):
            _, versions = self._read_index()
            self._write_index(version, versions)

    # ------------------------------------------------------------------ index file
    @property
    def index_path(self) -> Path:
        """The JSON index file."""
        return self.folder / INDEX_NAME

    def _read_index(self) -> tuple[str | None, list[ModelVersion]]:
        path = self.index_path
        if not path.is_file():
            return None, []
        try:
            raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            versions = [ModelVersion(**entry) for entry in raw["versions"]]
            active = raw.get("active")
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ModelFileError(
                f"the model index {path} is unreadable ({exc.__class__.__name__}: {exc}); "
                "fix or delete it (the model files beside it are kept) or choose another folder"
            ) from None
        if active is not None and all(v.version != active for v in versions):
            active = versions[-1].version if versions else None
        return active, versions

    def _write_index(self, active: str | None, versions: list[ModelVersion]) -> None:
        payload = {
            "format_version": INDEX_FORMAT,
            "active": active,
            "versions": [asdict(v) for v in versions],
        }
        with atomic_output(self.index_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _number(version: str) -> int:
    match = _VERSION.match(version)
    return int(match.group(1)) if match else 0
