"""Errors meant for the person running the plugin.

Every error the core raises on bad input is an :class:`FcnsegError`: its message names the
input, says what was wrong and what to do. The CLI prints it as one line and exits with code 2;
the widgets show it as a napari notification.
"""

from __future__ import annotations


class FcnsegError(Exception):
    """Base class of the errors whose message is written for the user."""


class InputError(FcnsegError, ValueError):
    """An image, labels or parameter that cannot be used as given."""


class ModelFileError(FcnsegError):
    """A model file that is missing, corrupt, unsafe or incompatible."""


class OutputExistsError(FcnsegError, FileExistsError):
    """An output file exists and overwriting was not asked for."""


class NotWritableError(FcnsegError, OSError):
    """A folder that cannot be written: read-only, not ours, or on a full disk."""


class BusyError(FcnsegError):
    """A folder stayed locked by another process (a running add, export or fine-tune)."""
