"""The fine-tune policy: learn from a person's corrections without getting worse.

One round, as the **Fine-tune** form and ``fcnseg train --init`` run it (:func:`fine_tune`):

1. Every correction so far (this round's and the earlier rounds') is split into training
   pixels and held-out blocks (:mod:`.holdout`); the held-out blocks are never trained on.
2. Crops are drawn half from the corrections and half from a replay of the model's original
   training data (:mod:`.replay`), so the network does not forget what it knew.
3. The starting model is scored on the held-out pixels first: it is candidate zero of the
   checkpoint selection. A fine-tuned checkpoint replaces it only when it scores higher there;
   otherwise the start is kept and the best fine-tuned weights are offered beside it.
4. BatchNorm keeps the starting model's statistics (one or two slices are too few to
   re-estimate them), and the run keeps to a time budget.
5. What is scored, kept and returned is halfway between the starting and the fine-tuned
   weights (``interpolation``, WiSE-FT; :mod:`._averaging`): on real slices it was the one
   setting that made a fine-tune on one slice help the other slices rather than hurt them.

The defaults are the settings ``benchmarks/bench_loop.py`` measured best (see
``benchmarks/README.md``, "The correction loop").
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.device import resolve_device, training_precision
from ..core.progress import Progress
from ..errors import InputError
from ..model.checkpoint import SegmentationModel
from .holdout import HOLDOUT_BLOCK, HOLDOUT_FRACTION, held_out_pixels, split_holdout
from .replay import REPLAY_KEY, replay_samples, replay_source
from .samples import TrainingSample
from .trainer import TrainConfig, TrainResult, fit

#: "auto" replay: draw the replay source the model file names.
AUTO = "auto"


@dataclass
class FineTuneSettings:
    """Settings of one fine-tune round (:func:`fine_tune`); the defaults are the measured best.

    ``max_seconds`` bounds the whole round (scoring the start included); ``max_steps``, when
    set, stops it sooner. ``replay_fraction`` of the crops come from replayed samples
    (``replay_count`` of them) when there are any. ``holdout_fraction`` of each slice's
    ``holdout_block``-px blocks are held out for scoring. The rest are :class:`TrainConfig`'s.
    """

    max_seconds: float | None = 60.0
    max_steps: int | None = None
    learning_rate: float = 3e-4
    crop: int = 128
    batch_size: int = 8
    scale: float | None = None
    replay_fraction: float = 0.5
    replay_count: int = 8
    holdout_block: int = HOLDOUT_BLOCK
    holdout_fraction: float = HOLDOUT_FRACTION
    freeze_batchnorm: bool = True
    l2sp: float = 0.0
    encoder_lr_factor: float = 1.0
    ema_decay: float | None = None
    interpolation: float = 0.5
    schedule: str = "constant"
    validate_seconds: float = 15.0
    corrected_only: bool = False
    channel_permutation: bool = False
    appearance: bool = False
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`InputError` naming the first unusable setting."""
        if not 0.0 <= self.replay_fraction < 1.0:
            raise InputError(
                f"replay_fraction {self.replay_fraction!r} must be in [0, 1): some crops must "
                "come from the corrections"
            )
        if self.replay_count < 0:
            raise InputError(f"replay_count {self.replay_count!r} must be >= 0")
        if self.max_seconds is None and self.max_steps is None:
            raise InputError("give a fine-tune a time budget (max_seconds) or max_steps")
        self.train_config().check()

    def train_config(self) -> TrainConfig:
        """Return the trainer's settings for this round."""
        return TrainConfig(
            max_seconds=self.max_seconds,
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            crop=self.crop,
            learning_rate=self.learning_rate,
            scale=self.scale,
            corrected_only=self.corrected_only,
            channel_permutation=self.channel_permutation,
            appearance=self.appearance,
            device=self.device,
            precision=self.precision,
            channels_last=_channels_last(self.device),
            schedule=self.schedule,
            seed=self.seed,
            freeze_batchnorm=self.freeze_batchnorm,
            recalibrate_batchnorm=not self.freeze_batchnorm,
            l2sp=self.l2sp,
            encoder_lr_factor=self.encoder_lr_factor,
            ema_decay=self.ema_decay,
            interpolation=self.interpolation,
            validate_start=True,
            validate_every=100_000,  # by time instead: validate_seconds
            validate_seconds=self.validate_seconds,
            patience=100_000,  # the budget ends the round; selection keeps the best
        )


def _channels_last(device: str) -> bool:
    """Channels-last only where it measured faster: CUDA, and CPUs with native bfloat16.

    On a 2-core AMD EPYC without bfloat16 a channels-last float32 step was slower than the
    usual layout (``benchmarks/bench_training.py``, see ``benchmarks/README.md``).
    """
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return True
    import torch

    return training_precision("auto", resolved) == torch.bfloat16


@dataclass
class FineTuneOutcome:
    """What one round returns.

    Attributes
    ----------
    model
        The model to use from now on: the fine-tuned one when it beat the start on the
        held-out pixels, else the starting model (unchanged weights).
    improved
        Whether ``model`` is the fine-tuned one.
    start_score, new_score
        Foreground IoU on the held-out pixels of the starting model and of the best
        fine-tuned checkpoint (``None`` when the round ended before any was scored).
    candidate
        When the start was kept: the best fine-tuned model, for a person who wants it anyway.
    """

    model: SegmentationModel
    improved: bool
    start_score: float | None
    new_score: float | None
    steps: int
    seconds: float
    held_out_pixels: int
    replayed: int
    candidate: SegmentationModel | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trained(self) -> SegmentationModel | None:
        """The best fine-tuned model, whether or not it was kept."""
        return self.model if self.improved else self.candidate

    def summary(self, new: str = "the fine-tuned model", old: str = "the start") -> str:
        """One line for people, e.g. ``v003: 0.94 on your held-out corrections, v002 had 0.91``."""
        start = "n/a" if self.start_score is None else f"{self.start_score:.3f}"
        if self.new_score is None:
            return f"no fine-tuned checkpoint was scored in the time budget: {old} kept ({start})"
        verdict = f"{new} is now active" if self.improved else f"{old} stays active"
        return (
            f"{new}: {self.new_score:.3f} on your held-out corrections, {old} had {start}: "
            f"{verdict}"
        )


def fine_tune(
    model: SegmentationModel,
    corrections: Sequence[TrainingSample],
    settings: FineTuneSettings | None = None,
    *,
    replay: Sequence[TrainingSample] | str | None = AUTO,
    validation: Sequence[TrainingSample] = (),
    provenance: dict[str, Any] | None = None,
    checkpoint_dir: str | Path | None = None,
) -> Generator[Progress, None, FineTuneOutcome]:
    """Run one round of the fine-tune policy; yield progress, return a :class:`FineTuneOutcome`.

    Parameters
    ----------
    model
        The model to start from (untouched).
    corrections
        Every corrected or checked slice so far: earlier rounds' and this one's.
    settings
        The policy's settings (default: :class:`FineTuneSettings`).
    replay
        ``"auto"``: the source the model file names (:func:`.replay.replay_source`); a list
        of samples; or ``None`` for no replay.
    validation
        Whole slices to score on besides the held-out blocks (e.g. an annotated set's val
        items); they are not trained on.
    provenance
        Extra provenance for the model file.
    checkpoint_dir
        Passed to :func:`.trainer.fit`: ``latest.safetensors`` (and ``best``) at every scoring.
    """
    settings = settings or FineTuneSettings()
    settings.check()
    if not corrections:
        raise InputError("nothing to fine-tune on: correct some labels first")
    train, held_out = split_holdout(
        corrections, block=settings.holdout_block, fraction=settings.holdout_fraction
    )
    val = [*held_out, *validation]
    if not val:
        raise InputError(
            "the corrections are too small to hold any pixels out for scoring (under "
            f"{settings.holdout_block} px with annotated pixels): correct a larger area"
        )
    source = replay_source(model.info)
    if settings.replay_fraction == 0.0:
        replayed: list[TrainingSample] = []
    elif isinstance(replay, str):
        if replay != AUTO:
            raise InputError(f"replay={replay!r}: give 'auto', a list of samples or None")
        replayed = replay_samples(source, model.info, count=settings.replay_count)
    else:
        replayed = list(replay or [])
        source = {"kind": "given", "count": len(replayed)} if replayed else source
    weights = _weights(len(train), len(replayed), settings.replay_fraction)
    extra = {
        "fine_tune": {
            "corrections": [s.name for s in corrections][:100],
            "held_out_pixels": held_out_pixels(held_out),
            "replayed": len(replayed),
        },
        **({REPLAY_KEY: source} if source is not None else {}),
        **(provenance or {}),
    }
    result: TrainResult = yield from fit(
        model,
        [*train, *replayed],
        val,
        settings.train_config(),
        provenance=extra,
        train_weights=weights,
        checkpoint_dir=checkpoint_dir,
    )
    improved = result.start_val_iou is None or result.improved
    new_score = result.best_val_iou if improved else result.candidate_val_iou
    return FineTuneOutcome(
        model=result.model,
        improved=improved and result.steps > 0 and new_score is not None,
        start_score=result.start_val_iou,
        new_score=new_score,
        steps=result.steps,
        seconds=result.seconds,
        held_out_pixels=held_out_pixels(held_out),
        replayed=len(replayed),
        candidate=result.candidate,
        history=result.history,
    )


def _weights(corrections: int, replayed: int, fraction: float) -> list[float] | None:
    """Per-sample crop shares: ``fraction`` for the replayed samples, the rest for corrections."""
    if not replayed:
        return None
    return [(1.0 - fraction) / corrections] * corrections + [fraction / replayed] * replayed
