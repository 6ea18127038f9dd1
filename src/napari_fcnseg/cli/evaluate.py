"""``fcnseg evaluate``: score a model on annotated images (foreground IoU, Dice, class IoU)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ._options import add_command, add_fill_holes_option, add_model_options, load_model

EXAMPLES = (
    "fcnseg evaluate --images test/images --labels test/labels",
    "fcnseg evaluate --images test/images --labels test/labels --model mine.safetensors --json",
)


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``fcnseg evaluate`` to ``fcnseg``'s subcommands."""
    parser = add_command(
        commands,
        "evaluate",
        summary="score a model on annotated images",
        description=[
            "Predict each image of --images and compare it with the labels of the same name "
            "in --labels: foreground IoU and Dice per image and their means, and the mean IoU "
            "over the classes present in the labels.",
        ],
        examples=EXAMPLES,
    )
    parser.add_argument(
        "--images",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder of TIFF, PNG or JPEG images to score on",
    )
    parser.add_argument(
        "--labels",
        required=True,
        type=Path,
        metavar="DIR",
        help="labels named like the images (NAME.tif/.png or NAME_labels.tif)",
    )
    add_model_options(parser)
    add_fill_holes_option(parser)
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``fcnseg evaluate``; return the exit status."""
    from ..core.metrics import foreground_scores
    from ..core.predict import model_labels, predict_probabilities
    from ..core.progress import run_to_completion
    from ..io.images import IMAGE_SUFFIXES, read_image
    from ..io.labels import read_labels

    model = load_model(args)
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
        labels = model_labels(model.info, probs, fill_holes=args.fill_holes)
        scores = foreground_scores(labels, reference, model.info.num_classes)
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
