"""``fcnseg train`` and ``fcnseg add``: grow an annotated set and train or fine-tune on it.

``cli.py`` registers these with :func:`add_parsers` and dispatches to :func:`run`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .core.device import DEVICE_CHOICES, PRECISIONS
from .errors import InputError
from .training.config import SCHEDULES, TrainConfig
from .training.finetune import FineTuneSettings

if TYPE_CHECKING:
    from .core.progress import Progress
    from .model.checkpoint import SegmentationModel
    from .training.samples import TrainingSample

log = logging.getLogger("napari_fcnseg")
T = TypeVar("T")
R = TypeVar("R")

COMMANDS = ("train", "add")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``add`` subcommands to ``fcnseg``'s subparsers."""
    train = commands.add_parser(
        "train",
        help="train a new model or fine-tune one on an annotated set",
        description="Train on DIR (an annotated set, or images/ + labels/ folders). Uses the "
        "set's val items for validation (the training images if it has none). With --init, "
        "fine-tunes with the same policy as the Fine-tune form: a time budget (60 s), blocks of "
        "every slice held out for scoring, a replay of the model's own training data, and the "
        "starting model as candidate zero: MODEL is the fine-tuned model only if it beat the "
        "start on the held-out pixels.",
    )
    train.add_argument(
        "--data",
        required=True,
        type=Path,
        metavar="DIR",
        help="annotated set (fcnseg add) or a folder with images/ and labels/",
    )
    train.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="MODEL",
        help="model file to write (.safetensors)",
    )
    train.add_argument(
        "--init",
        metavar="MODEL",
        help="fine-tune this model ('default' = the bundled one); default: a new "
        "U-Net (depth 4, 16 features)",
    )
    train.add_argument(
        "--epochs",
        type=positive_int,
        metavar="N",
        help="passes over the annotated pixels (default: 1000 steps)",
    )
    train.add_argument("--max-steps", type=positive_int, metavar="N")
    train.add_argument(
        "--max-seconds",
        type=_positive_float,
        metavar="S",
        help=f"time budget for the whole run (with --init: default {_FT.max_seconds:g})",
    )
    train.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--batch",
        type=positive_int,
        metavar="N",
        help=f"crops per step (default {_NEW.batch_size}; with --init {_FT.batch_size})",
    )
    train.add_argument(
        "--crop",
        type=positive_int,
        metavar="N",
        help=f"training crop side in pixels (default {_NEW.crop}; with --init {_FT.crop})",
    )
    train.add_argument(
        "--scale",
        type=_scale,
        metavar="F",
        help="resize images by F before the network, in training and in every later "
        "prediction with the model (0.5 for objects large in pixels: 4x the context, 4x "
        "faster; default: the --init model's scale, else 1)",
    )
    train.add_argument(
        "--lr",
        type=_positive_float,
        metavar="RATE",
        help=f"learning rate (default {_NEW.learning_rate:g}; with --init {_FT.learning_rate:g})",
    )
    train.add_argument("--loss", choices=("dice_ce", "balanced_ce"), default="dice_ce")
    train.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="learning rate: constant (default), or a half cosine down to 5%% by the end of "
        "the run",
    )
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="arithmetic of the U-Net's training steps (auto: bfloat16 where the CPU or GPU "
        "computes it natively, else float32)",
    )
    train.add_argument(
        "--validate-every",
        type=positive_int,
        default=25,
        metavar="STEPS",
        help="steps between validations (default 25; with --init the policy scores every "
        f"{_FT.validate_seconds:g} s)",
    )
    train.add_argument(
        "--patience",
        type=positive_int,
        default=10,
        metavar="N",
        help="validations without improvement before stopping (default 10)",
    )
    train.add_argument(
        "--corrected-only",
        action="store_true",
        help="learn only from corrected pixels (and a 16 px band around them)",
    )
    train.add_argument(
        "--crf", action="store_true", help="then train U-Net + CRF-as-RNN jointly and store the CRF"
    )
    train.add_argument(
        "--checkpoints",
        type=Path,
        metavar="DIR",
        help="write best.safetensors and latest.safetensors here while training",
    )
    train.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    add = commands.add_parser("add", help="add an annotated image to a set (created if missing)")
    add.add_argument("--set", required=True, type=Path, metavar="DIR", dest="set_dir")
    add.add_argument(
        "--image",
        required=True,
        type=Path,
        metavar="IMG",
        help="TIFF, PNG or JPEG image (2D; a stack adds its annotated slices)",
    )
    add.add_argument(
        "--labels",
        required=True,
        type=Path,
        metavar="LBL",
        help="TIFF or PNG labels: 0 background, 1..K classes, 255 not annotated",
    )
    add.add_argument(
        "--corrected",
        type=Path,
        metavar="MASK",
        help="mask of the pixels a person edited or confirmed (non-zero = yes)",
    )
    add.add_argument("--name", help="item name (default: the image's file name stem)")
    add.add_argument(
        "--class-names",
        metavar="A,B,...",
        help="class names of a new set, background first (default: from labels)",
    )
    add.add_argument(
        "--split",
        choices=("train", "val"),
        help="force the split (default: automatic, about 20%% val)",
    )


_NEW, _FT = TrainConfig(), FineTuneSettings()


def run(args: argparse.Namespace) -> int:
    """Run ``fcnseg train`` or ``fcnseg add``; return the exit status."""
    if args.command == "train":
        return _train(args)
    if args.command == "add":
        return _add(args)
    raise InputError(f"unknown command {args.command!r}: use one of {', '.join(COMMANDS)}")


def _train(args: argparse.Namespace) -> int:
    from .io.atomic import check_writable
    from .model.checkpoint import MODEL_SUFFIX, SegmentationModel, save_model
    from .training.dataset import AnnotatedSet
    from .training.samples import sample_channels
    from .training.trainer import fit

    out = (
        args.out
        if args.out.suffix == MODEL_SUFFIX
        else args.out.with_name(args.out.name + MODEL_SUFFIX)
    )
    check_writable(out, args.overwrite)
    annotated = AnnotatedSet.open(args.data)
    train, val = annotated.load_samples("train"), annotated.load_samples("val")
    if not train:
        train, val = val, []
    if not train:
        raise InputError(f"{args.data} holds no annotated images; add some with fcnseg add")
    if args.init is not None:
        from .model.checkpoint import load_model
        from .model.default import resolve_model_path

        parent = resolve_model_path(args.init)
        model = load_model(parent)  # reads the header first: clear errors for foreign files
        names = {"parent": str(parent)}
    else:
        channels = sample_channels(train[0].image)
        model = SegmentationModel.create(annotated.class_names, channels)
        names = {}
    if model.info.class_names != annotated.class_names:
        log.warning(
            "the model's classes %s differ from the set's %s; training uses the label numbers",
            model.info.class_names,
            annotated.class_names,
        )
    if args.init is not None:
        return _fine_tune(args, model, train, val, out, names)
    config = TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_seconds=args.max_seconds,
        batch_size=_given(args.batch, _NEW.batch_size),
        crop=_given(args.crop, _NEW.crop),
        learning_rate=_given(args.lr, _NEW.learning_rate),
        loss=args.loss,
        precision=args.precision,
        schedule=args.schedule or _NEW.schedule,
        corrected_only=args.corrected_only,
        validate_every=args.validate_every,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        train_crf=args.crf,
        scale=args.scale,
    )
    log.info("training on %d image(s), validating on %d, from a new U-Net", len(train), len(val))
    job = fit(
        model,
        train,
        val,
        config,
        checkpoint_dir=args.checkpoints,
        provenance={"data": str(args.data), **names},
    )
    result = _run_with_bar(job)
    save_model(result.model, out, overwrite=args.overwrite)
    how = "stopped early" if result.stopped_early else "done"
    log.info("%s after %d steps in %.0f s; wrote %s", how, result.steps, result.seconds, out)
    iou = result.best_val_iou
    print(f"validation IoU: {iou:.4f}" if iou is not None else "validation IoU: n/a")
    return 0


def _fine_tune(
    args: argparse.Namespace,
    model: SegmentationModel,
    train: list[TrainingSample],
    val: list[TrainingSample],
    out: Path,
    names: dict[str, str],
) -> int:
    """``fcnseg train --init``: one round of the core fine-tune policy."""
    from .model.checkpoint import save_model
    from .training.finetune import fine_tune

    if args.epochs is not None or args.crf:
        raise InputError(
            "--epochs and --crf are for training a new model; fine-tuning (--init) runs for "
            "--max-seconds (or --max-steps)"
        )
    budget = args.max_seconds if args.max_seconds or not args.max_steps else None
    settings = FineTuneSettings(
        max_seconds=budget or (None if args.max_steps else _FT.max_seconds),
        max_steps=args.max_steps,
        batch_size=_given(args.batch, _FT.batch_size),
        crop=_given(args.crop, _FT.crop),
        learning_rate=_given(args.lr, _FT.learning_rate),
        schedule=args.schedule or _FT.schedule,
        scale=args.scale,
        corrected_only=args.corrected_only,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
    )
    log.info(
        "fine-tuning %s on %d image(s) (+%d validation images) for at most %s",
        args.init,
        len(train),
        len(val),
        f"{settings.max_seconds:g} s" if settings.max_seconds else f"{settings.max_steps} steps",
    )
    job = fine_tune(
        model,
        train,
        settings,
        validation=val,
        provenance={"data": str(args.data), **names},
        checkpoint_dir=args.checkpoints,
    )
    outcome = _run_with_bar(job)
    save_model(outcome.model, out, overwrite=args.overwrite)
    log.info("%d steps in %.0f s; wrote %s", outcome.steps, outcome.seconds, out)
    start = "n/a" if outcome.start_score is None else f"{outcome.start_score:.4f}"
    new = "n/a" if outcome.new_score is None else f"{outcome.new_score:.4f}"
    verdict = (
        f"beat the start: {out} holds the fine-tuned model"
        if outcome.improved
        else f"did not beat the start: {out} holds the starting weights of {args.init}"
    )
    print(f"held-out IoU: fine-tuned {new}, start {start}: {verdict}")
    return 0


def _run_with_bar(job: Generator[Progress, None, R]) -> R:
    """Run a training generator to the end with a tqdm bar on stderr."""
    from tqdm import tqdm

    from .core.progress import run_to_completion

    with tqdm(total=0, desc="train", unit="step", file=sys.stderr) as bar:

        def show(event: Progress) -> None:
            bar.total, bar.n = event.total, event.step
            val_iou = event.info.get("val_iou")
            bar.set_postfix(
                loss=f"{event.info.get('loss', float('nan')):.3f}",
                val_iou="-" if val_iou is None else f"{val_iou:.3f}",
                refresh=False,
            )
            bar.refresh()
            if event.info.get("phase") == "validate":
                log.debug(event.message)

        return run_to_completion(job, show)


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def _add(args: argparse.Namespace) -> int:
    import numpy as np

    from .io.axes import to_zyxc
    from .io.images import read_image
    from .io.labels import read_labels
    from .training.dataset import MANIFEST, AnnotatedSet, safe_item_name
    from .training.samples import samples_from_stack, squeeze_channel

    image = read_image(args.image)
    labels = np.asarray(read_labels(args.labels))
    corrected = None if args.corrected is None else np.asarray(read_labels(args.corrected)) > 0
    stack = to_zyxc(np.asarray(image.data), image.layout)
    labels_zyx = labels[None] if labels.ndim == 2 else labels
    if labels_zyx.shape != stack.shape[:3]:
        raise InputError(
            f"{args.labels} is shaped {labels.shape} but {args.image} has spatial "
            f"shape {image.layout.spatial_shape(tuple(image.data.shape))}; they "
            "must match"
        )
    if corrected is not None and corrected.shape != labels.shape:
        raise InputError(
            f"{args.corrected} is shaped {corrected.shape} but the labels are "
            f"shaped {labels.shape}; they must match"
        )
    if args.class_names:
        names = [n.strip() for n in args.class_names.split(",")]
        annotated = AnnotatedSet.create(args.set_dir, names)  # opens it when it exists
    elif (args.set_dir / MANIFEST).is_file():
        annotated = AnnotatedSet.open(args.set_dir)
    else:
        top = int(labels[labels != 255].max(initial=1))
        names = ["background"] + [f"class {k}" for k in range(1, top + 1)]
        annotated = AnnotatedSet.create(args.set_dir, names)
    base = args.name or safe_item_name(args.image.stem)
    mask = None if corrected is None else corrected.reshape(labels_zyx.shape)
    # (item name, (Y, X, C) image, labels, corrected mask, slice index)
    items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, int | None]]
    if not image.layout.is_stack:
        items = [(base, stack[0], labels_zyx[0], None if mask is None else mask[0], None)]
    else:
        items = [
            (
                f"{base}_z{int(s.name.split()[-1]):04d}",
                s.image,
                s.labels,
                s.corrected,
                int(s.name.split()[-1]),
            )
            for s in samples_from_stack(stack, labels_zyx, mask)
        ]
        if not items:
            raise InputError(f"{args.labels} has no annotated pixel (all 255); nothing to add")
    for name, img, lbl, item_mask, z in items:
        annotated.add_item(
            squeeze_channel(img),
            lbl,
            item_mask,
            name=name,
            source=str(args.image.resolve()),
            slice_index=z,
            split=args.split,
        )
        log.info("added %s", name)
    today = len(annotated.added_on())
    count = len(annotated)
    print(f"{count} image{'s' if count != 1 else ''} in {args.set_dir}, {today} added today")
    return 0


def positive_int(text: str) -> int:
    """Parse a whole number of at least 1 (an argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _scale(text: str) -> float:
    from .model.scale import check_scale

    try:
        return check_scale(_positive_float(text))
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value
