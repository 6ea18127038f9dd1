"""Helpers of :mod:`.dataset`: the split rule and plain ``images/`` + ``labels/`` folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.images import IMAGE_SUFFIXES
from ..io.labels import read_labels
from .samples import IGNORE_LABEL

#: Fraction of automatically split items that go to validation.
VAL_FRACTION = 0.2
SPLITS = ("train", "val")
LABEL_SUFFIXES = (".tif", ".tiff", ".png")


def validate_split(split: str) -> None:
    """Raise :class:`InputError` unless ``split`` is ``"train"`` or ``"val"``."""
    if split not in SPLITS:
        raise InputError(f"split {split!r} is not known: use 'train' or 'val'")


def name_fraction(name: str) -> float:
    """Map ``name`` to [0, 1): the first 8 bytes of its SHA-256 over 2**64."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def auto_splits(names: list[str], explicit: dict[str, str]) -> dict[str, str]:
    """Split of every name: ``explicit`` ones kept, the rest by :func:`name_fraction`.

    When there are two or more names and none would be in validation, the automatically split
    name with the smallest fraction goes to validation.
    """
    splits = {
        n: explicit.get(n) or ("val" if name_fraction(n) < VAL_FRACTION else "train") for n in names
    }
    auto = [n for n in names if n not in explicit]
    if len(names) >= 2 and "val" not in splits.values() and auto:
        splits[min(auto, key=name_fraction)] = "val"
    return splits


def find_plain_pairs(images: Path, labels: Path) -> dict[str, tuple[Path, Path]]:
    """Match ``images/NAME.ext`` with ``labels/NAME.ext`` or ``labels/NAME_labels.ext``."""
    label_files: dict[str, Path] = {}
    for path in sorted(labels.iterdir()):
        if path.suffix.lower() in LABEL_SUFFIXES and not path.name.startswith("."):
            stem = path.stem[: -len("_labels")] if path.stem.endswith("_labels") else path.stem
            label_files.setdefault(stem, path)
    pairs: dict[str, tuple[Path, Path]] = {}
    unmatched = []
    for path in sorted(images.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem in pairs:
            raise InputError(
                f"{images} holds two images named {path.stem!r} (different extensions); keep one"
            )
        if path.stem in label_files:
            pairs[path.stem] = (path, label_files[path.stem])
        else:
            unmatched.append(path.name)
    if not pairs:
        raise InputError(
            f"no image in {images} has labels in {labels} (expected labels/NAME.tif or .png "
            "for images/NAME.tif/.png/.jpg)"
        )
    if unmatched:
        raise InputError(
            f"{len(unmatched)} image(s) in {images} have no labels in {labels}, e.g. "
            f"{unmatched[0]}; add labels or move the image out"
        )
    return pairs


def class_names_from_labels(paths: list[Path]) -> list[str]:
    """Make generic class names covering the largest label in ``paths`` (255 not counted)."""
    top = 1
    for path in paths:
        values = np.unique(read_labels(path))
        values = values[values != IGNORE_LABEL]
        if values.size:
            top = max(top, int(values.max()))
    if top >= IGNORE_LABEL:
        raise InputError(f"labels reach {top}; at most {IGNORE_LABEL - 1} classes are supported")
    return ["background"] + [f"class {k}" for k in range(1, top + 1)]
