"""The ``fcnseg`` command: segment, refine and evaluate without a GUI."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import __version__, _cli_training
from .core.device import DEVICE_CHOICES
from .errors import FcnsegError, InputError

log = logging.getLogger("napari_fcnseg")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fcnseg`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="fcnseg",
        description="Segment microscopy images with a U-Net (+ CRF-as-RNN), evaluate models.",
    )
    parser.add_argument("--version", action="version", version=f"napari-fcnseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser("predict", help="segment images and write label TIFFs")
    predict.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                         help="TIFF (2D, stack, RGB, multichannel), PNG or JPEG images")
    predict.add_argument("--out", required=True, type=Path, metavar="DIR",
                         help="folder for <input stem>_labels.tif")
    _add_model_options(predict)
    predict.add_argument("--axes", help="axes of the inputs when the file does not say, e.g. ZCYX")
    predict.add_argument("--crf", action="store_true",
                         help="refine with the dense CRF (CRF-as-RNN) before writing labels")
    predict.add_argument("--crf-iterations", type=_positive_int, default=5, metavar="N",
                         help="mean-field iterations of the CRF (default 5)")
    predict.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    evaluate = commands.add_parser("evaluate", help="score a model on annotated images")
    evaluate.add_argument("--images", required=True, type=Path, metavar="DIR")
    evaluate.add_argument("--labels", required=True, type=Path, metavar="DIR",
                          help="labels named like the images (NAME.tif/.png or NAME_labels.tif)")
    _add_model_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    _cli_training.add_parsers(commands)
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="model file (.safetensors); default: the bundled model")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--tile", type=_positive_int, default=1024, metavar="N",
                        help="largest tile side in pixels (default 1024)")
    parser.add_argument("--batch", type=_positive_int, default=4, metavar="N",
                        help="tiles per forward pass (default 4)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fcnseg``; return the exit status (0 success, 2 bad input, 1 unexpected error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="fcnseg: %(message)s", stream=sys.stderr)
    try:
        if args.command == "predict":
            return _predict(args)
        if args.command in _cli_training.COMMANDS:
            return _cli_training.run(args)
        return _evaluate(args)
    except FcnsegError as exc:
        print(f"fcnseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcnseg: interrupted; no partial output files were left", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"fcnseg: unexpected error: {type(exc).__name__}: {exc} (rerun with --debug "
              "for details)", file=sys.stderr)
        return 1


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .model.checkpoint import load_model
    from .model.default import resolve_model_path

    return load_model(resolve_model_path(args.model))


def _predict(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from .core.crf import refine_with_crf
    from .core.predict import SlicePrediction, predict_slices, prepare_image
    from .io.atomic import check_writable
    from .io.images import read_image
    from .io.labels import labels_dtype, write_label_pages

    model = _load(args)
    outputs = [args.out / f"{path.stem}_labels.tif" for path in args.inputs]
    if len(set(outputs)) != len(outputs):
        raise InputError("two inputs share a file name stem; their outputs would collide")
    for out in outputs:
        check_writable(out, args.overwrite)
    dtype = labels_dtype(model.info.num_classes)
    for path, out in zip(args.inputs, outputs):
        image = read_image(path, axes=args.axes, channels=model.info.in_channels)
        prepared = prepare_image(image.data, model.info.in_channels, image.layout.axes, str(path))
        with tqdm(total=0, desc=path.name, unit="tile", file=sys.stderr, leave=True) as bar:

            def pages() -> Iterator:  # type: ignore[type-arg]
                job = predict_slices(model, image.data, axes=image.layout.axes, tile=args.tile,
                                     batch=args.batch, device=args.device)
                for event in job:
                    if isinstance(event, SlicePrediction):
                        probs = event.probabilities
                        if args.crf:
                            probs = refine_with_crf(
                                np.asarray(prepared.stack[event.index]), probs,
                                iterations=args.crf_iterations, device=args.device)
                        yield probs.argmax(axis=0).astype(dtype)
                    else:
                        bar.total = event.total
                        bar.n = event.step
                        bar.refresh()

            write_label_pages(out, pages(), shape=prepared.spatial_shape, dtype=dtype,
                              overwrite=args.overwrite, class_names=model.info.class_names)
        log.info("wrote %s", out)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .core.metrics import foreground_scores
    from .core.predict import predict_probabilities, probabilities_to_labels
    from .core.progress import run_to_completion
    from .io.images import IMAGE_SUFFIXES, read_image
    from .io.labels import read_labels

    model = _load(args)
    pairs = _pair_images_and_labels(args.images, args.labels, IMAGE_SUFFIXES)
    rows = []
    for image_path, label_path in pairs:
        image = read_image(image_path, channels=model.info.in_channels)
        probs = run_to_completion(predict_probabilities(
            model, image.data, axes=image.layout.axes, tile=args.tile, batch=args.batch,
            device=args.device))
        scores = foreground_scores(probabilities_to_labels(probs), read_labels(label_path))
        rows.append({"image": image_path.name, **scores})
    means = {key: sum(r[key] for r in rows) / len(rows) for key in ("iou", "dice", "class_iou")}
    if args.json:
        print(json.dumps({"images": rows, "mean": means}, indent=2))
    else:
        width = max(len("mean"), *(len(r["image"]) for r in rows))
        print(f"{'image':<{width}}  {'IoU':>6}  {'Dice':>6}  {'class IoU':>9}")
        for r in [*rows, {"image": "mean", **means}]:
            print(f"{r['image']:<{width}}  {r['iou']:6.3f}  {r['dice']:6.3f}  {r['class_iou']:9.3f}")
    return 0


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
            raise InputError(f"no labels for {image.name} in {labels} (looked for "
                             f"{image.stem}.tif/.png or {image.stem}_labels.tif)")
        pairs.append((image, match))
    if not pairs:
        raise InputError(f"{images} holds no TIFF, PNG or JPEG images")
    return pairs


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
