"""The settings of a training run and of a fine-tune round, checked before anything runs.

:class:`TrainConfig` is the trainer's, :class:`FineTuneSettings` the fine-tune policy's. This
module imports neither torch nor the trainer: the ``fcnseg`` parser reads the defaults and
choices here without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.choices import PRECISIONS
from ..errors import InputError
from ..model.scale import check_scale

#: Steps run when neither epochs, max_steps nor max_seconds is given.
DEFAULT_MAX_STEPS = 1000
#: The losses :func:`~.losses.segmentation_loss` computes.
LOSSES = ("dice_ce", "balanced_ce", "ce")
SCHEDULES = ("constant", "cosine")
#: Which weights a run updates: every one, the decoder and head (the encoder runs without
#: gradients), or only the normalisation layers' scales and shifts and the head.
TRAINABLE = ("all", "decoder", "norm")
#: The cosine schedule ends at this fraction of the learning rate.
COSINE_FLOOR = 0.05


@dataclass
class TrainConfig:
    """Settings of :func:`fit`.

    The run stops at the first of ``epochs`` (one epoch = enough crops to cover the annotated
    pixels once), ``max_steps``, ``max_seconds`` (whole run, CRF phase included) and early
    stopping (``patience`` validations without a better validation IoU). With none of the first
    three, :data:`DEFAULT_MAX_STEPS` steps. ``precision`` is that of the U-Net phase's
    forward and backward passes: ``"float32"``, ``"bfloat16"`` (autocast; weights, loss and
    validation stay float32) or ``"auto"`` (bfloat16 where the processor computes it natively,
    see :func:`training_precision`); ``channels_last`` runs those steps in the channels-last
    memory layout (faster convolutions; the returned model is in the usual layout).
    ``schedule`` is ``"constant"`` or ``"cosine"`` (the learning rate falls along a half cosine
    to 5% of ``learning_rate`` at the first of the step limit and the time budget).
    ``recalibrate_batchnorm`` re-estimates BatchNorm statistics on un-augmented training crops
    before every validation (see :mod:`._batchnorm`); ``freeze_batchnorm`` instead keeps the
    starting model's statistics and normalises training batches with them (a fine-tune on one or
    two slices: their batch statistics describe a few crops, not the imaging mode). ``l2sp``
    adds ``l2sp * sum((w - w_start) ** 2)`` to the loss, pulling the weights toward the starting
    model's (L2-SP); ``encoder_lr_factor`` scales the learning rate of the U-Net's encoder, and
    ``trainable`` (one of :data:`TRAINABLE`) says which weights are updated at all.
    ``ema_decay`` (e.g. 0.99) validates and returns an exponential moving average of the
    weights, and ``interpolation`` below 1 the weights that far from the start toward the
    trained ones (see :mod:`._averaging`). ``validate_start`` scores the starting weights before
    the first step, so they are candidate zero of the checkpoint selection: the returned model
    is the start unless a later validation beat it; with ``selection_confidence`` above 0, beat
    it that surely (the share of paired bootstrap resamples of ``selection_block``-px
    validation blocks, of those that tell the two apart, in which it scores higher;
    :mod:`.evidence`). ``labels_as_seen`` scores labels made as the model's file says
    (:func:`~napari_fcnseg.core.predict.model_labels`: holes filled where it says so) instead
    of the most probable class (what the bundled models' recipe selected by). ``guard_tolerance``
    applies when :func:`fit` is given guard samples: a trained checkpoint that beat the start
    replaces it only if its IoU on those is at most that much below the start's.
    ``validate_seconds`` also
    validates whenever that many seconds passed since the last validation (time budgets, where
    the step count is unknown). ``scale`` sets the trained model's working scale (images resized
    by it before the network, see :mod:`~napari_fcnseg.core.rescale`); ``None`` keeps the
    starting model's. ``legacy_elastic`` resamples elastic deformations with SciPy as the
    bundled model's recipe did (10x slower, same distribution). ``appearance`` adds blur and
    gamma augmentation and ``channel_noise`` sometimes makes one channel a faint, grainy copy of
    itself (a weak stain stretched by per-channel scaling; :mod:`.augment`). ``crf_*`` settings
    apply to the joint U-Net + CRF phase run after the U-Net phase when ``train_crf`` is set.
    """

    epochs: int | None = None
    max_steps: int | None = None
    max_seconds: float | None = None
    batch_size: int = 8
    crop: int = 256
    learning_rate: float = 1e-3
    loss: str = "dice_ce"
    corrected_only: bool = False
    corrected_margin: int = 16
    validate_every: int = 25
    patience: int = 10
    seed: int = 0
    device: str = "auto"
    augment: bool = True
    precision: str = "auto"
    channels_last: bool = True
    schedule: str = "constant"
    recalibrate_batchnorm: bool = True
    freeze_batchnorm: bool = False
    l2sp: float = 0.0
    encoder_lr_factor: float = 1.0
    trainable: str = "all"
    ema_decay: float | None = None
    interpolation: float = 1.0
    validate_start: bool = False
    selection_confidence: float = 0.0
    selection_block: int = 128
    labels_as_seen: bool = False
    guard_tolerance: float = 0.005
    validate_seconds: float | None = None
    scale: float | None = None
    legacy_elastic: bool = False
    train_crf: bool = False
    channel_permutation: bool | None = None  # None: only for 3-channel (RGB) images
    appearance: bool = False
    channel_noise: bool = False
    validation_tile: int = 1024
    crf_steps: int = 60
    crf_batch_size: int = 4
    crf_crop: int = 128
    crf_learning_rate: float = 1e-2
    crf_iterations: int = 5
    crf_time_fraction: float = 0.3
    crf_validate_every: int = 20

    def check(self) -> None:
        """Raise :class:`InputError` naming the first unusable setting."""
        positive = {
            "batch_size": self.batch_size,
            "crop": self.crop,
            "validate_every": self.validate_every,
            "patience": self.patience,
            "learning_rate": self.learning_rate,
            "crf_batch_size": self.crf_batch_size,
            "crf_crop": self.crf_crop,
            "crf_validate_every": self.crf_validate_every,
            "selection_block": self.selection_block,
        }
        optional = {
            "epochs": self.epochs,
            "max_steps": self.max_steps,
            "max_seconds": self.max_seconds,
            "validate_seconds": self.validate_seconds,
        }
        for key, value in [*positive.items(), *optional.items()]:
            if value is not None and not value > 0:
                raise InputError(f"training setting {key}={value!r} must be positive")
        if self.schedule not in SCHEDULES:
            raise InputError(
                f"unknown schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}"
            )
        if self.precision not in PRECISIONS:
            raise InputError(
                f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}"
            )
        if self.trainable not in TRAINABLE:
            raise InputError(
                f"unknown trainable {self.trainable!r}: choose one of {', '.join(TRAINABLE)}"
            )
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.scale is not None:
            check_scale(self.scale, "training setting scale")
        if self.corrected_margin < 0 or self.crf_steps < 0:
            raise InputError("corrected_margin and crf_steps must be >= 0")
        if not self.l2sp >= 0 or not self.encoder_lr_factor >= 0 or not self.guard_tolerance >= 0:
            raise InputError(
                "training settings l2sp, encoder_lr_factor and guard_tolerance must be >= 0"
            )
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise InputError(f"training setting ema_decay={self.ema_decay!r} must be in (0, 1)")
        if not 0.0 <= self.selection_confidence < 1.0:
            raise InputError(
                f"training setting selection_confidence={self.selection_confidence!r} must be "
                "in [0, 1)"
            )
        if not 0.0 < self.interpolation <= 1.0:
            raise InputError(
                f"training setting interpolation={self.interpolation!r} must be in (0, 1]"
            )


#: Side of the hold-out blocks in image pixels: about half an egg chamber on the shared slices,
#: so a held-out block is seldom predictable from the labels right beside it alone.
HOLDOUT_BLOCK = 128
#: Share of a slice's annotated blocks held out.
HOLDOUT_FRACTION = 0.2
#: Guard samples of a fine-tune that keeps the encoder (``benchmarks/README.md``, "A guard of
#: what the model already did well").
GUARD_COUNT = 6


@dataclass
class FineTuneSettings:
    """Settings of one fine-tune round (:func:`~.finetune.fine_tune`); defaults: the measured best.

    ``max_seconds`` bounds the whole round (scoring the start included); ``max_steps``, when
    set, stops it sooner. ``replay_fraction`` of the crops come from replayed samples
    (``replay_count`` of them) when there are any. ``holdout_fraction`` of each slice's
    ``holdout_block``-px blocks are held out for scoring; a fine-tuned checkpoint replaces the
    start only when it beats it in ``selection_confidence`` of the paired bootstrap resamples
    of those blocks that tell the two apart (:mod:`.evidence`), and only when it scores no more
    than ``guard_tolerance`` below the start on ``guard_count`` slices of the model's original
    training data that the round does not train on (:func:`.replay.guard_samples`): what the
    model already did well. ``guard_count=None`` (the default) means :data:`GUARD_COUNT` when
    the encoder stays as it is, and no guard with ``trainable="all"``: that is the choice for
    a new imaging mode, where leaving the old data behind is the point. The rest are
    :class:`TrainConfig`'s.
    """

    max_seconds: float | None = 60.0
    max_steps: int | None = None
    learning_rate: float = 1e-3
    crop: int = 128
    batch_size: int = 8
    scale: float | None = None
    replay_fraction: float = 0.5
    replay_count: int = 8
    holdout_block: int = HOLDOUT_BLOCK
    holdout_fraction: float = HOLDOUT_FRACTION
    selection_confidence: float = 0.9
    guard_count: int | None = None
    guard_tolerance: float = 0.005
    freeze_batchnorm: bool = True
    l2sp: float = 0.0
    encoder_lr_factor: float = 1.0
    trainable: str = "decoder"
    ema_decay: float | None = None
    interpolation: float = 0.5
    schedule: str = "constant"
    validate_seconds: float = 15.0
    corrected_only: bool = False
    channel_permutation: bool = False
    appearance: bool = False
    channel_noise: bool = False
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
        if self.replay_count < 0 or (self.guard_count is not None and self.guard_count < 0):
            raise InputError(
                f"replay_count {self.replay_count!r} and guard_count {self.guard_count!r} must "
                "be >= 0"
            )
        if self.max_seconds is None and self.max_steps is None:
            raise InputError("give a fine-tune a time budget (max_seconds) or max_steps")
        self.train_config().check()

    def guard_size(self) -> int:
        """Return how many guard samples the round draws (``guard_count``, resolved)."""
        if self.guard_count is not None:
            return self.guard_count
        return 0 if self.trainable == "all" else GUARD_COUNT

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
            channel_noise=self.channel_noise,
            device=self.device,
            precision=self.precision,
            channels_last=_channels_last(self.device),
            schedule=self.schedule,
            seed=self.seed,
            freeze_batchnorm=self.freeze_batchnorm,
            recalibrate_batchnorm=not self.freeze_batchnorm,
            l2sp=self.l2sp,
            encoder_lr_factor=self.encoder_lr_factor,
            trainable=self.trainable,
            ema_decay=self.ema_decay,
            interpolation=self.interpolation,
            validate_start=True,
            selection_confidence=self.selection_confidence,
            selection_block=self.holdout_block,
            guard_tolerance=self.guard_tolerance,
            labels_as_seen=True,  # never worse in what the user sees
            validate_every=100_000,  # by time instead: validate_seconds
            validate_seconds=self.validate_seconds,
            patience=100_000,  # the budget ends the round; selection keeps the best
        )


def _channels_last(device: str) -> bool:
    """Channels-last only where it measured faster: CUDA, and CPUs with native bfloat16.

    On a 2-core AMD EPYC without bfloat16 a channels-last float32 step was slower than the
    usual layout (``benchmarks/bench_training.py``, see ``benchmarks/README.md``).
    """
    import torch  # here, not above: the settings themselves are read without torch

    from ..core.device import resolve_device, training_precision

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return True
    return training_precision("auto", resolved) == torch.bfloat16
