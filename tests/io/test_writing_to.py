"""OS refusals to write become one message that names the folder and says what to do."""

from __future__ import annotations

import errno

import pytest

from napari_fcnseg.errors import NotWritableError, OutputExistsError
from napari_fcnseg.io.atomic import writing_to
from napari_fcnseg.training.dataset import AnnotatedSet


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), "choose a folder you can write to"),
        (OSError(errno.EROFS, "Read-only file system"), "choose a folder you can write to"),
        (OSError(errno.ENOSPC, "No space left on device"), "free some space"),
    ],
)
def test_os_errors_become_one_message(tmp_path, error, hint):
    with pytest.raises(NotWritableError) as caught, writing_to(tmp_path, "models folder"):
        raise error
    message = str(caught.value)
    assert f"cannot write to the models folder {tmp_path}" in message
    assert error.strerror in message and hint in message
    assert isinstance(caught.value, OSError)  # callers that tolerate OSError still do


def test_existing_outputs_and_our_errors_pass_through(tmp_path):
    with pytest.raises(OutputExistsError), writing_to(tmp_path):
        raise OutputExistsError("exists")
    with pytest.raises(FileExistsError), writing_to(tmp_path):
        raise FileExistsError("exists")
    with pytest.raises(ValueError), writing_to(tmp_path):
        raise ValueError("not an OS error")
    with pytest.raises(TimeoutError), writing_to(tmp_path):  # a lock's wait, not a refusal
        raise TimeoutError("lock held")


def test_a_set_where_a_file_is(tmp_path):
    (tmp_path / "a file").write_text("x")
    with pytest.raises(NotWritableError, match="cannot write to the annotated set"):
        AnnotatedSet.create(tmp_path / "a file" / "set", ["background", "egg"])
