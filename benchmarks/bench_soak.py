"""Soak test: segment many images in a row and check that memory does not grow.

Segments ``--count`` synthetic egg-chamber slices (default 100, RGB, ``--size`` px square) with
the bundled default model, twice, each in a fresh process:

* **core**: the ``fcnseg predict`` path in one process: read the image file, tiled
  inference, labels, an atomic compressed-TIFF write;
* **napari**: a napari viewer with the plugin's *Segment* widget, driven as a person would:
  add the image layer, press **Segment**, wait (in Qt's event loop) for the labels layer, save
  it with the plugin's labels writer, remove both layers.

For each it prints the resident set size after a warm-up (the first ``--warmup`` images) and at
the end, the growth between them (the target is under 5%), the peak, the seconds per image, and
whether every output file was written and reads back with the image's shape. RSS is measured
after ``gc.collect()``, so it is what the process keeps, not garbage awaiting collection. The
napari process still grows over its first 10-20 images (Qt, napari and torch caches filling)
and then stays flat, so a short run (``--count 10``) overstates its growth: quote the default.

    python benchmarks/bench_soak.py [--count 100] [--size 384] [--warmup 10] [--part core napari]

The napari part needs a display. Without ``$DISPLAY`` the script starts ``Xvfb`` on a free
display number for the napari process and stops it afterwards (Debian/Ubuntu: ``apt-get
install xvfb``; the Qt xcb libraries ``.ci/run`` installs are needed too); alternatively run it
under ``xvfb-run -a python benchmarks/bench_soak.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _memory import peak_rss_mib, reset_peak, rss_mib

TARGET_GROWTH = 0.05


def make_inputs(folder: Path, count: int, size: int) -> list[Path]:
    """Write ``count`` synthetic RGB slices as TIFFs; return their paths."""
    import tifffile

    from napari_fcnseg.training.synthetic import make_egg_chamber_slice

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image, _ = make_egg_chamber_slice((size, size), rng=i)
        path = folder / f"slice{i:04d}.tif"
        tifffile.imwrite(path, image, photometric="rgb")
        paths.append(path)
    return paths


def check_outputs(inputs: list[Path], out: Path) -> int:
    """Count the outputs that exist and read back with their input's shape."""
    from napari_fcnseg.io.labels import read_labels

    good = 0
    for path in inputs:
        labels_file = out / f"{path.stem}_labels.tif"
        if labels_file.is_file():
            good += read_labels(labels_file).shape == _spatial_shape(path)
    return good


def _spatial_shape(path: Path) -> tuple[int, ...]:
    import tifffile

    return tuple(tifffile.TiffFile(path).series[0].shape[:2])


class Recorder:
    """RSS after the warm-up and at the end, the peak after the warm-up, and timing."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.after_warmup: float | None = None
        self.start = 0.0

    def done(self, index: int) -> None:
        """Call after image ``index`` (0-based) is finished."""
        if index + 1 == self.warmup:
            gc.collect()
            self.after_warmup = rss_mib()
            reset_peak()
            self.start = time.perf_counter()

    def result(self, part: str, count: int, written: int) -> dict:
        gc.collect()
        end = rss_mib()
        measured = count - self.warmup
        return {
            "part": part,
            "count": count,
            "warmup": self.warmup,
            "rss_after_warmup": self.after_warmup,
            "rss_end": end,
            "growth": end / self.after_warmup - 1 if self.after_warmup else float("nan"),
            "peak": peak_rss_mib(),
            "seconds_per_image": (time.perf_counter() - self.start) / measured,
            "written": written,
        }


# ------------------------------------------------------------------------------------ core
def run_core(inputs: list[Path], out: Path, warmup: int) -> dict:
    import torch

    from napari_fcnseg.core.predict import predict_probabilities, probabilities_to_labels
    from napari_fcnseg.core.progress import run_to_completion
    from napari_fcnseg.io.images import read_image
    from napari_fcnseg.io.labels import write_labels
    from napari_fcnseg.model.checkpoint import load_model
    from napari_fcnseg.model.default import resolve_model_path

    torch.set_grad_enabled(False)
    model = load_model(resolve_model_path(None))
    recorder = Recorder(warmup)
    for index, path in enumerate(inputs):
        image = read_image(path, channels=model.info.in_channels)
        probs = run_to_completion(
            predict_probabilities(model, image.data, axes=image.layout.axes, device="cpu")
        )
        write_labels(out / f"{path.stem}_labels.tif", probabilities_to_labels(probs))
        recorder.done(index)
    return recorder.result("core (fcnseg predict path)", len(inputs), check_outputs(inputs, out))


# ---------------------------------------------------------------------------------- napari
def run_napari(inputs: list[Path], out: Path, warmup: int) -> dict:
    import napari
    from napari.utils.notifications import NotificationSeverity, notification_manager

    from napari_fcnseg._writer import write_labels_layer
    from napari_fcnseg.io.images import read_image

    errors: list[str] = []

    def on_notification(notification) -> None:
        if notification.severity >= NotificationSeverity.ERROR:
            errors.append(notification.message)

    notification_manager.notification_ready.connect(on_notification)
    viewer = napari.Viewer(show=False)
    _, dock = viewer.window.add_plugin_dock_widget("napari-fcnseg", "Segment and Refine with CRF")
    segment = dock.segment
    segment.model.value = "default"
    segment.device.value = "cpu"
    recorder = Recorder(warmup)
    for index, path in enumerate(inputs):
        viewer.add_image(read_image(path).data, name=path.stem, rgb=True)
        segment.image.value = viewer.layers[path.stem]
        segment.run_button.native.click()
        run_event_loop(until=lambda: not segment.runner.is_running, timeout=600)
        name = f"{path.stem} labels"
        if name in viewer.layers:
            write_labels_layer(str(out / f"{path.stem}_labels.tif"), viewer.layers[name].data, {})
        viewer.layers.clear()
        run_event_loop(until=lambda: False, timeout=0.05)
        recorder.done(index)
    result = recorder.result("napari Segment widget", len(inputs), check_outputs(inputs, out))
    result["errors"] = errors[:3]
    viewer.close()
    return result


def run_event_loop(until: Callable[[], bool], timeout: float) -> None:
    """Run Qt's event loop until ``until()`` is true or ``timeout`` seconds have passed.

    A real event loop, as in an interactive session, not ``processEvents()``: Qt deletes the
    widgets of removed layers (``deleteLater``) only from an event loop, so a loop of
    ``processEvents()`` calls would keep every layer's controls and count them as a leak.
    """
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + timeout

    def check() -> None:
        if until() or time.monotonic() >= deadline:
            loop.quit()

    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(5)
    loop.exec()
    timer.stop()


# ------------------------------------------------------------------------------- processes
def _child(part: str, inputs: Path, count: int, warmup: int, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, __file__, "--child", part, "--inputs", str(inputs)]
        command += ["--count", str(count), "--warmup", str(warmup), "--out", out]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{part} run failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def _display_env(models: Path) -> tuple[dict[str, str], subprocess.Popen | None]:
    """Environment for the napari process, with an Xvfb server when there is no display."""
    env = dict(os.environ, NAPARI_FCNSEG_MODELS=str(models))
    if env.get("DISPLAY"):
        return env, None
    if shutil.which("Xvfb") is None:
        raise SystemExit("no $DISPLAY and no Xvfb: install xvfb or run under xvfb-run -a")
    for number in range(99, 140):
        if not Path(f"/tmp/.X11-unix/X{number}").exists():
            break
    server = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"Xvfb :{number} did not start")
        time.sleep(0.1)
    env["DISPLAY"] = f":{number}"
    env.setdefault("QT_QPA_PLATFORM", "xcb")
    return env, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="images per part (default 100)")
    parser.add_argument("--size", type=int, default=384, help="image side in px (default 384)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="images before the first RSS (default: a tenth of --count, at least 3)",
    )
    parser.add_argument("--part", nargs="+", choices=("core", "napari"), default=["core", "napari"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warmup = (
        args.warmup if args.warmup is not None else min(args.count - 1, max(3, args.count // 10))
    )
    if not 0 < warmup < args.count:
        parser.error("--warmup must be between 1 and --count - 1")
    if args.child:
        inputs = sorted(args.inputs.glob("*.tif"))[: args.count]
        run = run_core if args.child == "core" else run_napari
        print(json.dumps(run(inputs, args.out, warmup)))
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "inputs"
        make_inputs(folder, args.count, args.size)
        server = None
        try:
            for part in args.part:
                env = dict(os.environ)
                if part == "napari":
                    env, server = _display_env(Path(tmp) / "models")
                rows.append(_child(part, folder, args.count, warmup, env))
        finally:
            if server is not None:
                server.terminate()
                server.wait()
    print(
        f"{args.count} images of {args.size}x{args.size} RGB, bundled default model, CPU, "
        f"RSS after {warmup} warm-up images vs at the end (target growth < 5%)"
    )
    print(
        "| part | images | RSS after warm-up MiB | RSS at end MiB | growth | peak MiB "
        "| s/image | outputs written |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['part']} | {r['count']} | {r['rss_after_warmup']:.0f} | {r['rss_end']:.0f} | "
            f"{100 * r['growth']:+.1f}% | {r['peak']:.0f} | {r['seconds_per_image']:.2f} | "
            f"{r['written']}/{r['count']} |"
        )
    for r in rows:
        verdict = "ok" if r["growth"] < TARGET_GROWTH else "ABOVE TARGET"
        print(f"{r['part']}: memory growth {100 * r['growth']:+.1f}% ({verdict})")
        if r["written"] != r["count"]:
            print(f"{r['part']}: only {r['written']} of {r['count']} outputs were written")
        if r.get("errors"):
            print(f"{r['part']}: error notifications: {r['errors']}")


if __name__ == "__main__":
    main()
