"""Crash-safe changes to an annotated set: staged files, a commit record, then the moves.

Adding or updating an item changes several files (image, labels, corrected mask, manifest).
Each change runs, under the set's folder lock, as a small transaction:

1. the new files are written, complete and flushed, into ``.staging/<id>/``;
2. ``.staging/<id>/commit.json`` is written atomically: the moves to make, the new manifest and
   the files to delete. From this moment the change is decided;
3. the files are moved into place, the manifest is replaced, files no longer used are deleted
   and ``.staging/<id>/`` is removed.

A process killed before step 2 leaves a staging folder without a commit record, which the next
change (or :func:`recover`) removes: the set is as it was. One killed during step 3 leaves a
commit record, which is replayed: a move whose file is already in place is skipped, so the set
ends as the new version. Either way the manifest never points at a missing or half-written
file, and an updated item never mixes old and new files (a new image with old labels).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.atomic import atomic_output

log = logging.getLogger(__name__)

STAGING = ".staging"
COMMIT = "commit.json"


def new_staging_folder(set_path: Path) -> Path:
    """Create and return an empty ``.staging/<id>/`` folder for one change."""
    folder = set_path / STAGING / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def commit(
    set_path: Path,
    staging: Path,
    moves: list[tuple[str, str]],
    manifest_name: str,
    manifest_text: str,
    deletions: list[str],
) -> None:
    """Record a change and apply it (steps 2 and 3 of the module docstring).

    Parameters
    ----------
    set_path
        The set folder.
    staging
        The change's staging folder, holding the files to move.
    moves
        ``(file name in staging, path relative to the set)`` pairs.
    manifest_name
        The manifest's file name inside the set.
    manifest_text
        The new manifest.
    deletions
        Paths relative to the set to delete once the manifest no longer uses them.
    """
    record = {
        "moves": [list(pair) for pair in moves],
        "manifest": manifest_name,
        "manifest_text": manifest_text,
        "deletions": deletions,
    }
    with atomic_output(staging / COMMIT) as tmp:
        tmp.write_text(json.dumps(record), encoding="utf-8")
    _apply(set_path, staging)


def discard(staging: Path) -> None:
    """Remove the staging folder of a change that failed before it was committed."""
    shutil.rmtree(staging, ignore_errors=True)
    _remove_if_empty(staging.parent)


def has_pending(set_path: Path) -> bool:
    """Tell whether a change is running or was interrupted (``.staging/`` exists)."""
    return (set_path / STAGING).exists()


def recover(set_path: Path) -> int:
    """Finish committed changes and drop uncommitted ones; return how many were replayed.

    Call with the set's folder lock held (a running change also has a staging folder).
    """
    root = set_path / STAGING
    if not root.is_dir():
        return 0
    replayed = 0
    for staging in sorted(root.iterdir()):
        if (staging / COMMIT).is_file():
            log.warning("%s: finishing a change that was interrupted", set_path)
            _apply(set_path, staging)
            replayed += 1
        elif staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
    _remove_if_empty(root)
    return replayed


def _apply(set_path: Path, staging: Path) -> None:
    record = _read_record(staging)
    for name, target in record["moves"]:
        source = staging / name
        if source.is_file():  # else moved before an interruption
            final = set_path / target
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, final)
    with atomic_output(set_path / record["manifest"], overwrite=True) as tmp:
        tmp.write_text(record["manifest_text"], encoding="utf-8")
    for target in record["deletions"]:
        (set_path / target).unlink(missing_ok=True)
    discard(staging)


def _read_record(staging: Path) -> dict[str, Any]:
    """Read a commit record, refusing one that would touch files outside the set.

    A set folder may come from elsewhere (a colleague, a download): its records are checked
    like any other input before a single file is moved.
    """
    path = staging / COMMIT
    problem = None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        moves = [(str(name), str(target)) for name, target in record["moves"]]
        targets = [target for _, target in moves] + [str(t) for t in record["deletions"]]
        if not (
            all(is_plain_name(name) for name, _ in moves)
            and all(is_inside(target) for target in targets)
            and is_plain_name(str(record["manifest"]))
            and isinstance(record["manifest_text"], str)
        ):
            problem = "it names files outside the set"
    except (ValueError, KeyError, TypeError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        raise InputError(
            f"{path} is not a valid record of an interrupted change ({problem}); if you trust "
            f"this set, delete {staging} (the change it held is lost) and open the set again"
        )
    record["moves"] = moves
    return record


def is_plain_name(name: str) -> bool:
    """Tell whether ``name`` is a single file name (no folder, not ``.`` or ``..``)."""
    return bool(name) and name not in (".", "..") and Path(name).name == name and "\\" not in name


def is_inside(relative: str) -> bool:
    """Tell whether ``relative`` is a path inside a folder (not absolute, no ``..``)."""
    path = Path(relative)
    return (
        bool(relative)
        and not path.is_absolute()
        and "\\" not in relative
        and ":" not in relative
        and all(part not in ("", ".", "..") for part in path.parts)
    )


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (another change) or already gone
