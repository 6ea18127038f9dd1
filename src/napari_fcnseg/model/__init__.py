"""Networks (U-Net, CRF-as-RNN) and self-describing model files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .package import register_foreign


# Other tools' bioimage.io packages open through checkpoint.load_model, which dispatches to
# these (checkpoint cannot import .foreign, which builds on it); .foreign, torch and
# bioimageio load only when such a package is opened, so the CLI's help stays light.
def _load_foreign(path: Path, **kwargs: Any) -> Any:
    from .foreign import load_foreign_package

    return load_foreign_package(path, **kwargs)


def _describe_foreign(path: Path) -> Any:
    from .foreign import read_foreign_info

    return read_foreign_info(path)


register_foreign(_load_foreign, _describe_foreign)
