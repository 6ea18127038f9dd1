"""Ctrl-C (or SIGTERM) during ``fcnseg predict``: a short message, no partial output files."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupting_predict_leaves_no_partial_output(tmp_path, tiny_model_file, signum):
    stack = tmp_path / "stack.tif"
    # long enough (about 25 s of prediction on 2 cores) that a test starved of the CPU for a
    # few seconds still signals a running prediction; an interrupted one stops at once
    data = (np.random.default_rng(0).random((1000, 64, 64)) * 255).astype(np.uint8)
    tifffile.imwrite(stack, data, imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    command = [sys.executable, "-m", "napari_fcnseg", "predict", str(stack), "--out", str(out)]
    command += ["--model", str(tiny_model_file), "--device", "cpu", "--tile", "32", "--batch", "1"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited
        # "ignore" (as it should): give the child Ctrl-C's default, as a terminal would.
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 60
    # The output's hidden temporary file appears when the first slice is being predicted.
    while not any(p.name.startswith(".") for p in out.iterdir()):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "fcnseg predict did not start writing"
        time.sleep(0.01)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == "fcnseg: interrupted; no partial output files were left"
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert stdout == ""
