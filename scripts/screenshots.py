"""Render the plugin in a real napari window and save the README screenshots to docs/images/.

Run it under a display, e.g. headless::

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots.py

It opens the synthetic egg-chamber sample, docks "Segment and Refine with CRF" and
"Fine-tune and Export", and clicks through the workflow with the real buttons, saving:

* ``docs/images/segment.png``  - the image, its labels and the Segment form
* ``docs/images/crf.png``      - the CRF-refined labels
* ``docs/images/finetune.png`` - a corrected labels layer, the loss plot and the model versions
* ``docs/images/export.png``   - the Export form after writing to an annotated set

With ``--real DIR`` (the folder of the real drosophila ovary slices, e.g.
``../shared/data/drosophila_ovary``), it also segments real slices, a red, a magenta and a
grey one, with *objects* checked, and saves ``docs/images/real_red.png``,
``real_magenta.png`` and ``real_grey.png``; ``--only-real`` skips the synthetic workflow.
A bundled ``egg-structure`` model, when there is one, segments the grey slice's four
structures.

Without a bundled default model (and without ``--model``), a small demo model is first trained on
other synthetic slices (about a minute on a laptop CPU), so the pictures show real predictions.
Everything it writes besides the screenshots goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"


def demo_model(folder: Path, steps: int) -> Path:
    """Train a small U-Net on synthetic slices (not the sample image) and save it."""
    from napari_fcnseg.core.progress import run_to_completion
    from napari_fcnseg.model.checkpoint import SegmentationModel, save_model
    from napari_fcnseg.training.samples import TrainingSample
    from napari_fcnseg.training.synthetic import CLASS_NAMES, make_egg_chamber_slice
    from napari_fcnseg.training.trainer import TrainConfig, fit

    samples = [
        TrainingSample(*make_egg_chamber_slice(shape=(256, 256), rng=seed, scale=0.75))
        for seed in (21, 22, 23, 24)
    ]
    model = SegmentationModel.create(list(CLASS_NAMES), 3, depth=3, base_features=12)
    config = TrainConfig(
        max_steps=steps,
        batch_size=4,
        crop=128,
        learning_rate=3e-3,
        validate_every=max(10, steps // 4),
        device="cpu",
    )
    start = time.monotonic()
    result = run_to_completion(fit(model, samples[:3], samples[3:], config))
    print(
        f"demo model: {steps} steps in {time.monotonic() - start:.0f} s, "
        f"val IoU {result.best_val_iou}"
    )
    return save_model(result.model, folder / "demo.safetensors")


def wait(runner: object, app: object, timeout: float = 600.0) -> None:
    """Process Qt events until the form's job has ended."""
    start = time.monotonic()
    while runner.is_running:  # type: ignore[attr-defined]
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)
        if time.monotonic() - start > timeout:
            raise TimeoutError("the job did not finish")
    settle(app)


def settle(app: object, seconds: float = 0.5) -> None:
    """Let Qt draw everything."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


def save(viewer: object, name: str, app: object, dock: object) -> None:
    """Grab the whole window (canvas, layer list and docks) with ``dock``'s tab in front."""
    dock.raise_()  # type: ignore[attr-defined]
    settle(app)
    path = OUT / name
    viewer.window._qt_window.grab().save(str(path))  # type: ignore[attr-defined]
    print("saved", path.relative_to(ROOT))


def main() -> None:
    """Click through the workflow and save the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="model file (default: bundled or demo)")
    parser.add_argument("--steps", type=int, default=150, help="demo model training steps")
    parser.add_argument("--finetune-steps", type=int, default=40)
    parser.add_argument("--real", type=Path, help="folder of the real slices (image/NAME.jpg)")
    parser.add_argument("--only-real", action="store_true", help="only the real-slice pictures")
    args = parser.parse_args()
    if args.only_real and args.real is None:
        parser.error("--only-real needs --real DIR")

    import os

    tmp = Path(tempfile.mkdtemp(prefix="fcnseg-screenshots-"))
    os.environ["NAPARI_FCNSEG_MODELS"] = str(tmp / "models")  # never the user's folder

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_fcnseg.model.default import default_model_path

    model = args.model or default_model_path() or demo_model(tmp, args.steps)
    OUT.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(title="napari-fcnseg")
    app = QApplication.instance()
    window = viewer.window._qt_window
    window.resize(1500, 950)
    if not args.only_real:
        viewer.open_sample("napari-fcnseg", "egg_chamber_slice")
    seg_dock, seg = viewer.window.add_plugin_dock_widget(
        "napari-fcnseg", "Segment and Refine with CRF"
    )
    train_dock, train = viewer.window.add_plugin_dock_widget(
        "napari-fcnseg", "Fine-tune and Export", tabify=True
    )
    for dock in (seg_dock, train_dock):
        dock.setMinimumWidth(380)
    seg_dock.raise_()
    settle(app)

    if not args.only_real:
        workflow(viewer, app, args, model, tmp, (seg_dock, seg), (train_dock, train))
    if args.real is not None:
        real_slices(viewer, app, args.real, (seg_dock, seg))
    print("temporary files in", tmp)
    viewer.close()


def workflow(viewer, app, args, model, tmp, segment_dock, train_dock_pair) -> None:
    """Segment, refine, correct, fine-tune and export the synthetic sample, saving each step."""
    from napari_fcnseg._sample_data import SLICE_PARAMS
    from napari_fcnseg.model.default import default_model_path
    from napari_fcnseg.training.synthetic import make_egg_chamber_slice

    seg_dock, seg = segment_dock
    train_dock, train = train_dock_pair
    # 1. Segment
    form = seg.segment
    if default_model_path() is None or args.model:
        form.model.value = "file"
        form.model_file.value = model
    form.tile.value = 512
    form.run_button.native.click()
    wait(form.runner, app)
    labels = viewer.layers["egg chambers (synthetic) labels"]
    labels.opacity = 0.55
    viewer.reset_view()
    save(viewer, "segment.png", app, seg_dock)

    # 2. Refine with CRF
    crf = seg.crf
    crf.run_button.native.click()
    wait(crf.runner, app)
    viewer.layers["egg chambers (synthetic) labels CRF"].opacity = 0.55
    save(viewer, "crf.png", app, seg_dock)

    # 3. Correct the labels (here: paste the true labels of one region, as a brush would) and
    #    fine-tune on them.
    crf.before.native.click()  # back to the Segment labels, which we correct
    _, truth = make_egg_chamber_slice(**SLICE_PARAMS)
    corrected = np.array(labels.data)
    if len(segment_model_classes(viewer, labels)) == 2:
        truth = (truth > 0).astype(truth.dtype)  # a foreground/background model (the bundled one)
    corrected[:, :384] = truth[:, :384]
    labels.data = corrected
    viewer.layers.selection.active = labels
    viewer.layers["egg chambers (synthetic) labels CRF"].visible = False
    train_dock.raise_()
    finetune = train.finetune
    finetune.layers.value = [labels]
    finetune.steps.value = args.finetune_steps  # the policy's settings otherwise
    finetune.run_button.native.click()
    wait(finetune.runner, app, timeout=1800)
    save(viewer, "finetune.png", app, train_dock)

    # 4. Export to an annotated set
    export = train.export
    export.labels_layer.value = labels
    export.folder.value = tmp / "annotated set"
    export.run_button.native.click()
    wait(export.runner, app)
    from qtpy.QtWidgets import QScrollArea

    for area in train_dock.findChildren(QScrollArea):  # the Export form is below Fine-tune
        area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())
    save(viewer, "export.png", app, train_dock)
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)


def point(viewer, layer, app) -> None:
    """Hover the mouse over the largest object, so that the status bar shows what napari shows."""
    from skimage.measure import label, regionprops

    data = np.asarray(layer.data)
    regions = regionprops(data if data.max() > 1 else label(data > 0))
    if regions:
        largest = max(regions, key=lambda r: r.area)
        viewer.cursor.position = tuple(float(v) for v in largest.centroid)
    settle(app)


#: (slice, how it is shown, picture): the stains our users see, red, magenta and grey.
REAL_VIEWS = (
    ("insitu4174", "red", "real_red.png"),
    ("insitu7544", "magenta", "real_magenta.png"),
    ("insitu7331", "grey", "real_grey.png"),
)


def real_slices(viewer, app, folder: Path, segment_dock) -> None:
    """Segment real slices with the bundled models, objects included, and save each view."""
    from skimage import io as skio

    from napari_fcnseg.model.default import bundled_models

    seg_dock, seg = segment_dock
    form = seg.segment
    structure = "egg-structure" in bundled_models()
    for name, look, picture in REAL_VIEWS:
        image = np.asarray(skio.imread(folder / "image" / f"{name}.jpg"))
        if look == "grey":
            image = image.max(axis=-1)
        title = f"{name} ({look})"
        layer = viewer.add_image(image, name=title, rgb=image.ndim == 3)
        form.image.value = layer
        bundled = "egg-structure" if look == "grey" and structure else "egg-chambers"
        form.model.value = "default" if bundled == "egg-chambers" else f"bundled:{bundled}"
        form.objects.value = bundled == "egg-chambers"
        form.run_button.native.click()
        wait(form.runner, app)
        shown = viewer.layers[f"{title} objects" if form.objects.value else f"{title} labels"]
        if form.objects.value:
            viewer.layers[f"{title} labels"].visible = False  # the outlines of the objects
        viewer.layers.selection.active = shown
        viewer.reset_view()
        point(viewer, shown, app)
        save(viewer, picture, app, seg_dock)
        for shown in list(viewer.layers):
            viewer.layers.remove(shown)


def segment_model_classes(viewer, labels) -> list[str]:
    """Class names of the model that produced ``labels`` (from the plugin's record)."""
    from napari_fcnseg._qt.layers import record_of

    record = record_of(labels)
    return list(record.class_names) if record is not None else []


if __name__ == "__main__":
    main()
