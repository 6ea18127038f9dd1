"""The ``fcnseg`` command: segment, refine and evaluate without a GUI."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, _cli_training
from ._cli_training import positive_int
from .core.device import DEVICE_CHOICES
from .errors import FcnsegError, InputError

if TYPE_CHECKING:
    import numpy as np

    from .core.progress import Progress
    from .model.checkpoint import SegmentationModel

log = logging.getLogger("napari_fcnseg")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``fcnseg`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="fcnseg",
        description="Segment microscopy images with a U-Net (+ CRF-as-RNN), evaluate models.",
    )
    parser.add_argument("--version", action="version", version=f"napari-fcnseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser(
        "predict",
        help="segment images and write label TIFFs or OME-Zarr",
        description="Segment images slice by slice. Memory depends on the slice size and the "
        "tile, not on the number of slices; zarr inputs and large TIFFs are read lazily.",
    )
    predict.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="TIFF (2D, stack, RGB, multichannel), PNG or JPEG images, zarr / "
        "OME-Zarr folders, or folders of such images",
    )
    predict.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="PATH",
        help="folder for <input stem>_labels.tif (or _labels.ome.zarr with "
        "--format ome-zarr); or NAME.ome.zarr for a single input",
    )
    predict.add_argument(
        "--format",
        choices=("tiff", "ome-zarr"),
        default=None,
        help="output format (default: ome-zarr when --out ends in .zarr, else tiff)",
    )
    _add_model_options(predict, auto_tile=True)
    predict.add_argument("--axes", help="axes of the inputs when the file does not say, e.g. ZCYX")
    predict.add_argument(
        "--crf",
        action="store_true",
        help="refine with the dense CRF (CRF-as-RNN) before writing labels",
    )
    predict.add_argument(
        "--crf-iterations",
        type=positive_int,
        default=5,
        metavar="N",
        help="mean-field iterations of the CRF (default 5)",
    )
    predict.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    predict.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on a Dask cluster: a scheduler address (tcp://host:8786), a "
        "scheduler file (.json), or 'local' for worker processes on this machine",
    )
    predict.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="worker processes of --scheduler local (default: cores / 2)",
    )
    predict.add_argument(
        "--worker-threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="torch threads per worker (default: cores / workers for "
        "--scheduler local, the worker's own setting otherwise)",
    )

    evaluate = commands.add_parser("evaluate", help="score a model on annotated images")
    evaluate.add_argument("--images", required=True, type=Path, metavar="DIR")
    evaluate.add_argument(
        "--labels",
        required=True,
        type=Path,
        metavar="DIR",
        help="labels named like the images (NAME.tif/.png or NAME_labels.tif)",
    )
    _add_model_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    _cli_training.add_parsers(commands)
    return parser


def _add_model_options(parser: argparse.ArgumentParser, auto_tile: bool = False) -> None:
    parser.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="model file (.safetensors); default: the bundled model",
    )
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    if auto_tile:
        parser.add_argument(
            "--tile",
            type=_tile_size,
            default=None,
            metavar="N|auto",
            help="largest tile side in pixels; 'auto' (default): the largest "
            "up to 1024 that fits in free memory. A tile that does not fit is "
            "made smaller, with a warning",
        )
    else:
        parser.add_argument(
            "--tile",
            type=positive_int,
            default=1024,
            metavar="N",
            help="largest tile side in pixels (default 1024)",
        )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=4,
        metavar="N",
        help="tiles per forward pass (default 4)",
    )


def _tile_size(text: str) -> int | None:
    return None if text.strip().lower() == "auto" else positive_int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fcnseg``; return the exit status (0 success, 2 bad input, 1 unexpected error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="fcnseg: %(message)s", stream=sys.stderr)
    with _sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "predict":
            return _predict(args)
        if args.command in _cli_training.COMMANDS:
            return _cli_training.run(args)
        return _evaluate(args)
    except FcnsegError as exc:
        # One line, even when the message quotes a multi-line error of a library.
        print(f"fcnseg: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcnseg: interrupted; no partial output files were left", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"fcnseg: unexpected error: {type(exc).__name__}: {exc} (rerun with --debug "
            "for details)",
            file=sys.stderr,
        )
        return 1


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (``kill``, a job scheduler's cancel) like Ctrl-C while the block runs.

    Both then raise ``KeyboardInterrupt``, which removes the temporary file of an unfinished
    output and ends with a one-line message.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _load(args: argparse.Namespace) -> SegmentationModel:
    from .model.checkpoint import load_model
    from .model.default import resolve_model_path

    return load_model(resolve_model_path(args.model))


def _predict(args: argparse.Namespace) -> int:
    from .io.atomic import check_writable

    inputs = _expand_inputs(args.inputs)
    outputs = _output_paths(inputs, args.out, args.format)
    for out in outputs:
        check_writable(out, args.overwrite)
    if args.scheduler:
        return _predict_on_cluster(args, inputs, outputs)
    model = _load(args)
    for path, out in zip(inputs, outputs):
        _predict_one(args, model, path, out)
    return 0


def _expand_inputs(paths: Sequence[Path]) -> list[Path]:
    """Return the inputs, with plain folders replaced by the images (and zarr stores) inside."""
    from .io.images import IMAGE_SUFFIXES
    from .io.lazy import is_zarr_path

    inputs: list[Path] = []
    for path in paths:
        if path.is_dir() and not is_zarr_path(path):
            found = sorted(
                p
                for p in path.iterdir()
                if not p.name.startswith(".")
                and (p.suffix.lower() in IMAGE_SUFFIXES or is_zarr_path(p))
            )
            if not found:
                raise InputError(f"{path} is a folder without TIFF, PNG, JPEG or zarr images")
            inputs.extend(found)
        else:
            inputs.append(path)
    return inputs


def _output_paths(inputs: Sequence[Path], out: Path, fmt: str | None) -> list[Path]:
    """Where each input's labels go (see ``fcnseg predict --help``)."""
    from .io.lazy import image_stem, is_zarr_path
    from .io.ome_zarr import is_ome_zarr_name

    if is_ome_zarr_name(out):
        if fmt == "tiff":
            raise InputError(
                f"--out {out} ends in .zarr but --format tiff was given; give a "
                "folder for TIFF outputs"
            )
        if len(inputs) != 1:
            raise InputError(
                f"--out {out} names one OME-Zarr but {len(inputs)} inputs were given; give a "
                "folder with --format ome-zarr to write <stem>_labels.ome.zarr for each input"
            )
        return [out]
    if out.is_file():
        raise InputError(f"--out {out} is a file; give a folder (or NAME.ome.zarr)")
    suffix = "_labels.ome.zarr" if fmt == "ome-zarr" else "_labels.tif"
    stems = [image_stem(p) if is_zarr_path(p) else p.stem for p in inputs]
    outputs = [out / f"{stem}{suffix}" for stem in stems]
    if len(set(outputs)) != len(outputs):
        raise InputError("two inputs share a file name stem; their outputs would collide")
    return outputs


def _predict_one(args: argparse.Namespace, model: SegmentationModel, path: Path, out: Path) -> None:
    """Segment one input; errors about it name it."""
    try:
        _predict_file(args, model, path, out)
    except InputError as exc:
        if str(path) in str(exc):
            raise
        raise InputError(f"{path}: {exc}") from None


def _predict_file(
    args: argparse.Namespace, model: SegmentationModel, path: Path, out: Path
) -> None:
    import numpy as np
    from tqdm import tqdm

    from .core.device import resolve_device
    from .core.distributed import SliceLabels, label_slices
    from .core.memory import NetworkSize, choose_tile
    from .core.predict import prepare_image
    from .io.labels import labels_dtype, write_label_pages
    from .io.lazy import open_image
    from .io.ome_zarr import is_ome_zarr_name, write_ome_zarr_labels

    image = open_image(path, axes=args.axes, channels=model.info.in_channels)
    prepared = prepare_image(image.data, model.info.in_channels, image.layout.axes, str(path))
    depth, height, width = prepared.stack.shape[:3]
    device = resolve_device(args.device)
    plan = choose_tile(
        NetworkSize.of(model),
        (height, width),
        tile=args.tile,
        batch=args.batch,
        input_itemsize=np.dtype(image.data.dtype).itemsize,
        crf=args.crf,
        device=device.type,
    )
    log.info("%s: %d slice(s) of %dx%d px; %s", path.name, depth, height, width, plan.describe())
    dtype = labels_dtype(model.info.num_classes)
    with tqdm(total=0, desc=path.name, unit="tile", file=sys.stderr, leave=True) as bar:

        def pages() -> Iterator[np.ndarray]:
            for event in label_slices(
                model,
                image.data,
                axes=image.layout.axes,
                tile=plan.tile,
                batch=plan.batch,
                device=device,
                crf=args.crf,
                crf_iterations=args.crf_iterations,
            ):
                if isinstance(event, SliceLabels):
                    yield event.labels
                else:
                    bar.total = event.total
                    bar.n = event.step
                    bar.refresh()

        if is_ome_zarr_name(out):
            write_ome_zarr_labels(
                out,
                pages(),
                shape=prepared.spatial_shape,
                dtype=dtype,
                class_names=model.info.class_names,
                spacing=image.spacing,
                overwrite=args.overwrite,
            )
        else:
            write_label_pages(
                out,
                pages(),
                shape=prepared.spatial_shape,
                dtype=dtype,
                overwrite=args.overwrite,
                class_names=model.info.class_names,
            )
    log.info("wrote %s", out)


def _predict_on_cluster(args: argparse.Namespace, inputs: list[Path], outputs: list[Path]) -> int:
    import os

    from tqdm import tqdm

    from .core.distributed import PredictSettings, open_client, predict_files
    from .core.progress import run_to_completion
    from .model.checkpoint import read_model_info
    from .model.default import resolve_model_path

    model_path = resolve_model_path(args.model).resolve()
    read_model_info(model_path)  # a bad model file is reported before any worker starts
    for path in inputs:
        if not path.exists():
            raise InputError(f"{path}: no such file; check the path")
    threads = args.worker_threads
    if threads is None and args.scheduler == "local":
        workers = args.workers or max(1, (os.cpu_count() or 2) // 2)
        threads = max(1, (os.cpu_count() or 1) // workers)
    settings = PredictSettings(
        model_path=str(model_path),
        axes=args.axes,
        tile=args.tile,
        batch=args.batch,
        device=args.device,
        crf=args.crf,
        crf_iterations=args.crf_iterations,
        torch_threads=threads,
    )
    for handler in logging.getLogger().handlers:  # Dask's INFO lines would drown the progress
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or r.name.startswith(log.name))
    with open_client(args.scheduler, workers=args.workers) as client:
        log.info("running on %d Dask worker(s) at %s", len(client.nthreads()), args.scheduler)
        with tqdm(total=0, desc=f"{len(inputs)} file(s)", unit="slice", file=sys.stderr) as bar:

            def update(event: Progress) -> None:
                bar.total = event.total
                bar.n = event.step
                bar.refresh()

            written = run_to_completion(
                predict_files(
                    client,
                    [p.resolve() for p in inputs],
                    [o.resolve() for o in outputs],
                    settings,
                    overwrite=args.overwrite,
                ),
                update,
            )
    log.info("wrote %d output(s) in %s", len(written), args.out)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .core.metrics import foreground_scores
    from .core.predict import predict_probabilities, probabilities_to_labels
    from .core.progress import run_to_completion
    from .io.images import IMAGE_SUFFIXES, read_image
    from .io.labels import read_labels

    model = _load(args)
    pairs = _pair_images_and_labels(args.images, args.labels, IMAGE_SUFFIXES)
    scored: list[tuple[str, dict[str, float]]] = []
    for image_path, label_path in pairs:
        image = read_image(image_path, channels=model.info.in_channels)
        reference = read_labels(label_path)
        spatial = image.layout.spatial_shape(tuple(image.data.shape))
        if tuple(reference.shape) != spatial:
            raise InputError(
                f"{label_path} is shaped {tuple(reference.shape)} but {image_path} has spatial "
                f"shape {spatial}; give labels of the image's size (same rows, columns, slices)"
            )
        probs = run_to_completion(
            predict_probabilities(
                model,
                image.data,
                axes=image.layout.axes,
                tile=args.tile,
                batch=args.batch,
                device=args.device,
            )
        )
        scores = foreground_scores(
            probabilities_to_labels(probs), reference, model.info.num_classes
        )
        scored.append((image_path.name, scores))
    means = {
        key: sum(s[key] for _, s in scored) / len(scored) for key in ("iou", "dice", "class_iou")
    }
    if args.json:  # NaN (class IoU against labels with other classes) becomes null
        rows = [{"image": name, **_json_scores(s)} for name, s in scored]
        print(json.dumps({"images": rows, "mean": _json_scores(means)}, indent=2))
    else:
        width = max(len("mean"), *(len(name) for name, _ in scored))
        print(f"{'image':<{width}}  {'IoU':>6}  {'Dice':>6}  {'class IoU':>9}")
        for name, s in [*scored, ("mean", means)]:
            print(f"{name:<{width}}  {s['iou']:6.3f}  {s['dice']:6.3f}  {s['class_iou']:9.3f}")
        if any(s["class_iou"] != s["class_iou"] for _, s in scored):
            print("class IoU: nan where the labels use classes the model does not have")
    return 0


def _json_scores(scores: dict[str, float]) -> dict[str, float | None]:
    return {key: None if value != value else value for key, value in scores.items()}


def _pair_images_and_labels(
    images: Path, labels: Path, suffixes: Sequence[str]
) -> list[tuple[Path, Path]]:
    for folder, what in ((images, "--images"), (labels, "--labels")):
        if not folder.is_dir():
            raise InputError(f"{what} {folder} is not a folder")
    pairs = []
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in suffixes):
        candidates = [labels / f"{image.stem}{s}" for s in (".tif", ".tiff", ".png")]
        candidates += [labels / f"{image.stem}_labels.tif"]
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            raise InputError(
                f"no labels for {image.name} in {labels} (looked for "
                f"{image.stem}.tif/.png or {image.stem}_labels.tif)"
            )
        pairs.append((image, match))
    if not pairs:
        raise InputError(f"{images} holds no TIFF, PNG or JPEG images")
    return pairs


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
