"""Atomic, no-clobber file writes.

Every file the plugin writes goes through :func:`atomic_output`: the content is written to a
temporary file in the destination folder, flushed to disk, and only then moved into place, so a
crash or Ctrl-C never leaves a half-written file under the final name. Without ``overwrite`` the
move uses a hard link, which fails atomically when the destination already exists.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import NotWritableError, OutputExistsError


@contextlib.contextmanager
def writing_to(folder: str | os.PathLike[str], what: str = "folder") -> Iterator[None]:
    """Turn the operating system's refusals to write into ``folder`` into one clear message.

    An ``OSError`` raised in the block (no permission, a read-only file system, a full disk, a
    file where a folder should be) becomes :class:`NotWritableError` naming the folder and what
    to do; errors of this package pass through unchanged.
    """
    try:
        yield
    except NotWritableError:
        raise
    except OSError as exc:
        if isinstance(exc, FileExistsError | TimeoutError):  # an existing output; a wait
            raise
        reason = exc.strerror or type(exc).__name__
        hint = (
            "free some space on that disk or choose a folder on another one"
            if exc.errno == errno.ENOSPC
            else "choose a folder you can write to"
        )
        message = f"cannot write to the {what} {Path(folder)} ({reason}): {hint}"
        raise NotWritableError(message) from exc


def check_writable(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Raise :class:`OutputExistsError` when ``path`` exists and ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} already exists; choose another output folder, or allow overwriting to "
            "replace it (fcnseg's --overwrite, overwrite=True in Python)"
        )
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; move it to ``path`` when the block succeeds.

    The temporary file is removed if the block raises (including ``KeyboardInterrupt``).

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false (checked before and at the final move).
    """
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600 (and some writers replace the file): give the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            _move_no_clobber(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _move_no_clobber(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(
            f"{path} appeared while it was being written; nothing was overwritten. Allow "
            "overwriting to replace it (fcnseg's --overwrite, overwrite=True in Python)."
        ) from None
    except OSError:
        # File systems without hard links: check, then rename (a small race remains).
        check_writable(path, overwrite=False)
        os.replace(tmp, path)
        return
    tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
