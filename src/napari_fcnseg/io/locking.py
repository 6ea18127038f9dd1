"""An inter-process lock on a folder, for read-modify-write of the files in it.

Annotated sets (``dataset.json``) and model stores (``index.json``) are folders that several
processes may update at once: two ``fcnseg add`` runs, or two napari viewers exporting to one
set. Each update rereads the folder's index, changes it and writes it back; :func:`folder_lock`
makes these updates take turns, so none is lost. The lock is the `filelock
<https://py-filelock.readthedocs.io>`_ package's ``FileLock`` on ``FOLDER/.lock``: ``flock`` on
Unix and ``msvcrt.locking`` on Windows, released by the operating system when its process dies,
so a killed process never leaves the folder locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import BusyError
from .atomic import writing_to

#: Name of the lock file inside a locked folder.
LOCK_NAME = ".lock"

#: Seconds to wait for another process's update before giving up.
DEFAULT_TIMEOUT = 60.0


@contextlib.contextmanager
def folder_lock(
    folder: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT, what: str = "folder"
) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` for the duration of the block.

    Parameters
    ----------
    folder
        An existing folder; the lock file ``.lock`` is created in it.
    timeout
        Seconds to wait for a process that holds the lock.
    what
        What the folder is, for the error message (e.g. ``"annotated set"``).

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    BusyError
        When another process holds the lock for longer than ``timeout`` seconds.
    """
    from filelock import FileLock, Timeout

    path = Path(folder) / LOCK_NAME
    lock = FileLock(path, timeout=timeout)
    try:
        with writing_to(folder, what):
            lock.acquire()
    except Timeout:
        raise BusyError(
            f"the {what} {Path(folder)} is being updated by another process (it holds "
            f"{path}) and stayed so for {timeout:.0f} s; wait for that export, add or "
            "fine-tune to finish and try again"
        ) from None
    try:
        yield path
    finally:
        lock.release()
