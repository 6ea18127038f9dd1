from __future__ import annotations

import pytest

from napari_fcnseg.errors import BusyError
from napari_fcnseg.io.locking import LOCK_NAME, folder_lock


def test_a_held_lock_makes_others_wait_then_gives_a_clear_error(tmp_path):
    with folder_lock(tmp_path, what="annotated set") as lock_file:
        assert lock_file == tmp_path / LOCK_NAME
        with pytest.raises(BusyError, match=r"annotated set .* another process .* try again"):
            with folder_lock(tmp_path, timeout=0.1, what="annotated set"):
                pass
    with folder_lock(tmp_path, timeout=0.1):  # released: free again
        pass
