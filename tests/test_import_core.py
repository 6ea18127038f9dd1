import subprocess
import sys


def test_core_imports_no_gui():
    code = (
        "import sys, napari_fcnseg, napari_fcnseg.core.predict, napari_fcnseg.model.checkpoint, "
        "napari_fcnseg.io.images, napari_fcnseg.io.labels, napari_fcnseg.cli, napari_fcnseg.training;"
        "bad = [m for m in ('qtpy', 'napari', 'magicgui', 'PyQt6', 'PyQt5', 'PySide6') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
