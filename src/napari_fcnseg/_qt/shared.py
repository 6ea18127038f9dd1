"""State the docks share: the models folder (a :class:`ModelStore`) and its active version.

The Segment dock lists the store's versions as models to segment with; the Fine-tune dock adds
versions and switches the active one. Both listen to :data:`MODELS` to stay in step.
"""

from __future__ import annotations

import os
from pathlib import Path

from psygnal import Signal

from ..model.store import ModelStore, default_store_folder


class SharedModels:
    """The models folder chosen in the GUI; ``changed`` fires on a new folder or version."""

    changed = Signal()

    def __init__(self) -> None:
        self._folder: Path | None = None

    @property
    def folder(self) -> Path:
        """Return the chosen folder, else the default (see ``default_store_folder``)."""
        return self._folder if self._folder is not None else default_store_folder()

    def set_folder(self, folder: str | os.PathLike[str] | None) -> None:
        """Choose the models folder (``None``: back to the default)."""
        new = Path(folder).expanduser() if folder not in (None, "") else None
        if new != self._folder:
            self._folder = new
            self.changed.emit()

    @property
    def store(self) -> ModelStore:
        """The store in the chosen folder."""
        return ModelStore(self.folder)


#: The one shared instance (one person works in one napari session).
MODELS = SharedModels()
