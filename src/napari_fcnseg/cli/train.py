"""``fcnseg train``: train a new model, or fine-tune one with the core policy, on an annotated set.

The defaults shown in ``--help`` are those of
:class:`~napari_fcnseg.training.config.TrainConfig` (a new model) and
:class:`~napari_fcnseg.training.config.FineTuneSettings` (``--init``: the Fine-tune form's
policy), read from the torch-free settings module.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.choices import PRECISIONS
from ..errors import InputError
from ..training.config import (
    COSINE_FLOOR,
    DEFAULT_MAX_STEPS,
    LOSSES,
    SCHEDULES,
    TRAINABLE,
    FineTuneSettings,
    TrainConfig,
)
from ._options import (
    add_command,
    add_device_option,
    add_fill_holes_option,
    given,
    positive_float,
    positive_int,
    run_with_bar,
    scale_factor,
)

if TYPE_CHECKING:
    from ..model.checkpoint import SegmentationModel
    from ..training.samples import TrainingSample

log = logging.getLogger("napari_fcnseg")

#: The defaults of a new model's training and of a fine-tune round.
_NEW, _FT = TrainConfig(), FineTuneSettings()

EXAMPLES = (
    "fcnseg train --data eggs --out mine.safetensors --max-seconds 600",
    "fcnseg train --data eggs --out tuned.safetensors --init default   # fine-tune",
    "fcnseg train --data images_and_labels/ --out half.safetensors --scale 0.5 --crf",
)


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``fcnseg train`` to ``fcnseg``'s subcommands."""
    parser = add_command(
        commands,
        "train",
        summary="train a new model or fine-tune one on an annotated set",
        description=[
            "Train on DIR (an annotated set, or images/ + labels/ folders). Uses the set's val "
            "items for validation (the training images if it has none).",
            "With --init, fine-tunes with the same policy as the Fine-tune form: a time budget "
            f"({_FT.max_seconds:g} s), blocks of every slice held out for scoring, a replay of "
            "the model's own training data, and the starting model as candidate zero: MODEL is "
            "the fine-tuned model only if it beat the start on the held-out pixels.",
        ],
        examples=EXAMPLES,
    )
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        metavar="DIR",
        help="annotated set (fcnseg add) or a folder with images/ and labels/",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="MODEL",
        help="model file to write (.safetensors, added when missing)",
    )
    parser.add_argument(
        "--init",
        metavar="MODEL",
        help="fine-tune this model ('default' = the bundled one); default: train a new "
        "U-Net (depth 4, 16 features)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        metavar="N",
        help="passes over the annotated pixels (new models only); default: no epoch limit, "
        f"and {DEFAULT_MAX_STEPS} steps when none of --epochs, --max-steps and --max-seconds "
        "is given",
    )
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        metavar="N",
        help="stop after N training steps; default: no step limit",
    )
    parser.add_argument(
        "--max-seconds",
        type=positive_float,
        metavar="S",
        help="time budget in seconds for the whole run; default: none for a new model, "
        f"with --init {_FT.max_seconds:g} (none when --max-steps is given)",
    )
    add_device_option(parser)
    parser.add_argument(
        "--seed",
        type=int,
        default=_NEW.seed,
        help="seed of the initial weights, the crops and the augmentation",
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        metavar="N",
        help=f"crops per step; {_defaults(_NEW.batch_size, _FT.batch_size)}",
    )
    parser.add_argument(
        "--crop",
        type=positive_int,
        metavar="N",
        help=f"training crop side in pixels; {_defaults(_NEW.crop, _FT.crop)}",
    )
    parser.add_argument(
        "--scale",
        type=scale_factor,
        metavar="F",
        help="resize images by F before the network, in training and in every later "
        "prediction with the model (0.5 for objects large in pixels: 4x the context, 4x "
        "faster); default: the --init model's scale, else 1",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        metavar="RATE",
        help=f"learning rate; {_defaults(_NEW.learning_rate, _FT.learning_rate)}",
    )
    parser.add_argument(
        "--trainable",
        choices=TRAINABLE,
        help="with --init, the weights that learn: decoder = the decoder and head (corrections "
        "of images the model already knows), all = every weight (a new imaging mode: no "
        "guard of the model's earlier data), norm = "
        f"normalisation layers and head; default {_FT.trainable}",
    )
    parser.add_argument(
        "--loss",
        choices=LOSSES,
        default=_NEW.loss,
        help="loss of a new model: dice_ce = cross-entropy + soft Dice, balanced_ce = "
        "cross-entropy weighted by inverse class frequency, ce = plain cross-entropy",
    )
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help=f"learning rate: constant, or a half cosine down to {COSINE_FLOOR * 100:g}%% by "
        f"the end of the run; {_defaults(_NEW.schedule, _FT.schedule)}",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=_NEW.precision,
        help="arithmetic of the U-Net's training steps; auto: bfloat16 where the CPU or GPU "
        "computes it natively, else float32",
    )
    parser.add_argument(
        "--validate-every",
        type=positive_int,
        default=_NEW.validate_every,
        metavar="STEPS",
        help="steps between validations of a new model; with --init the policy scores every "
        f"{_FT.validate_seconds:g} s instead",
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=_NEW.patience,
        metavar="N",
        help="validations without improvement before a new model's training stops",
    )
    parser.add_argument(
        "--corrected-only",
        action="store_true",
        help=f"learn only from corrected pixels (and a {_NEW.corrected_margin} px band around "
        "them)",
    )
    parser.add_argument(
        "--crf",
        action="store_true",
        help="then train U-Net + CRF-as-RNN jointly and store the CRF (new models only)",
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        metavar="DIR",
        help="write best.safetensors and latest.safetensors here while training; default: none",
    )
    add_fill_holes_option(
        parser,
        help="write in the model that its objects are solid: labels made with it get the "
        "holes of their foreground filled (predict, evaluate, Segment); default: as the --init "
        "model says, else no",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser


def _defaults(new: object, fine_tune: object) -> str:
    """Say the defaults of an option whose default differs with ``--init``."""
    text = f"{new:g}" if isinstance(new, float) else str(new)
    if new == fine_tune:
        return f"default: {text}"
    policy = f"{fine_tune:g}" if isinstance(fine_tune, float) else str(fine_tune)
    return f"default: {text}, with --init the policy's {policy}"


def run(args: argparse.Namespace) -> int:
    """Run ``fcnseg train``; return the exit status."""
    from ..io.atomic import check_writable
    from ..model.checkpoint import MODEL_SUFFIX, SegmentationModel, save_model
    from ..training.dataset import AnnotatedSet
    from ..training.samples import sample_channels
    from ..training.trainer import fit

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
        from ..model.checkpoint import load_model
        from ..model.default import resolve_model_path

        parent = resolve_model_path(args.init)
        model = load_model(parent)  # reads the header first: clear errors for foreign files
        names = {"parent": str(parent)}
    else:
        channels = sample_channels(train[0].image)
        model = SegmentationModel.create(annotated.class_names, channels)
        names = {}
    if args.fill_holes is not None:
        model.info.fill_holes = args.fill_holes  # a fine-tune is then scored with it too
    if model.info.class_names != annotated.class_names:
        log.warning(
            "the model's classes %s differ from the set's %s; training uses the label numbers",
            model.info.class_names,
            annotated.class_names,
        )
    if args.init is not None:
        return _fine_tune(args, model, train, val, out, names)
    if args.trainable is not None:
        raise InputError("--trainable is for fine-tuning (--init MODEL): a new model trains all")
    config = TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_seconds=args.max_seconds,
        batch_size=given(args.batch, _NEW.batch_size),
        crop=given(args.crop, _NEW.crop),
        learning_rate=given(args.lr, _NEW.learning_rate),
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
    result = run_with_bar(job)
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
    from ..model.checkpoint import save_model
    from ..training.finetune import fine_tune

    if args.epochs is not None or args.crf:
        raise InputError(
            "--epochs and --crf are for training a new model; fine-tuning (--init) runs for "
            "--max-seconds (or --max-steps)"
        )
    budget = args.max_seconds if args.max_seconds or not args.max_steps else None
    settings = FineTuneSettings(
        max_seconds=budget or (None if args.max_steps else _FT.max_seconds),
        max_steps=args.max_steps,
        batch_size=given(args.batch, _FT.batch_size),
        crop=given(args.crop, _FT.crop),
        learning_rate=given(args.lr, _FT.learning_rate),
        trainable=args.trainable or _FT.trainable,
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
    outcome = run_with_bar(job)
    save_model(outcome.model, out, overwrite=args.overwrite)
    log.info("%d steps in %.0f s; wrote %s", outcome.steps, outcome.seconds, out)
    start = "n/a" if outcome.start_score is None else f"{outcome.start_score:.4f}"
    new = "n/a" if outcome.new_score is None else f"{outcome.new_score:.4f}"
    verdict = (
        f"beat the start: {out} holds the fine-tuned model"
        if outcome.improved
        else f"did not beat the start: {out} holds the starting weights of {args.init}"
    )
    higher = (outcome.new_score or 0.0) > (outcome.start_score or 0.0)
    if outcome.guard_refused and outcome.guard_new is not None:
        verdict += (
            f" (higher, but {outcome.guard_new:.4f} on the model's earlier training data, where "
            f"the start had {outcome.guard_start:.4f}"
            + ("" if outcome.guard_reference is None else
               f" and the first version {outcome.guard_reference:.4f}")
            + f"; at most {settings.guard_tolerance:g} lower allowed)"
        )  # fmt: skip
    elif not outcome.improved and outcome.confidence is not None and higher:
        verdict += (
            f" (higher, but in only {outcome.confidence:.0%} of resamples of the held-out "
            f"blocks; {settings.selection_confidence:.0%} needed)"
        )
    print(f"held-out IoU: fine-tuned {new}, start {start}: {verdict}")
    return 0
