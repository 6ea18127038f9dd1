import subprocess
import sys


def test_core_imports_no_gui():
    code = (
        "import sys, napari_fcnseg, napari_fcnseg.core.predict, napari_fcnseg.model.checkpoint, "
        "napari_fcnseg.io.images, napari_fcnseg.io.labels, napari_fcnseg.cli, "
        "napari_fcnseg.training.trainer, napari_fcnseg.training.dataset, napari_fcnseg.core.crf, "
        "napari_fcnseg.core.suggest;"
        "bad = [m for m in ('qtpy', 'napari', 'magicgui', 'PyQt6', 'PyQt5', 'PySide6') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_api_is_importable_from_the_package():
    import napari_fcnseg

    for name in napari_fcnseg.__all__:
        assert getattr(napari_fcnseg, name) is not None
    from napari_fcnseg import refine_with_crf  # noqa: F401


def test_importing_the_package_does_not_import_torch():
    code = "import sys, napari_fcnseg; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
