"""The settings of a training run (:class:`TrainConfig`), checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.device import PRECISIONS
from ..errors import InputError
from ..model.scale import check_scale
from .losses import LOSSES

#: Steps run when neither epochs, max_steps nor max_seconds is given.
DEFAULT_MAX_STEPS = 1000
SCHEDULES = ("constant", "cosine")
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
    model's (L2-SP); ``encoder_lr_factor`` scales the learning rate of the U-Net's encoder.
    ``ema_decay`` (e.g. 0.99) validates and returns an exponential moving average of the
    weights, and ``interpolation`` below 1 the weights that far from the start toward the
    trained ones (see :mod:`._averaging`). ``validate_start`` scores the starting weights before
    the first step, so they are candidate zero of the checkpoint selection: the returned model
    is the start unless a later validation beat it. ``validate_seconds`` also validates whenever
    that many seconds passed since the last validation (time budgets, where the step count is
    unknown). ``scale`` sets the trained model's working scale (images resized by it before the
    network, see :mod:`~napari_fcnseg.core.rescale`); ``None`` keeps the starting model's.
    ``legacy_elastic`` resamples elastic deformations with SciPy as the bundled model's recipe
    did (10x slower, same distribution). ``crf_*`` settings apply to the joint U-Net + CRF phase
    run after the U-Net phase when ``train_crf`` is set.
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
    ema_decay: float | None = None
    interpolation: float = 1.0
    validate_start: bool = False
    validate_seconds: float | None = None
    scale: float | None = None
    legacy_elastic: bool = False
    train_crf: bool = False
    channel_permutation: bool | None = None  # None: only for 3-channel (RGB) images
    appearance: bool = False
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
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.scale is not None:
            check_scale(self.scale, "training setting scale")
        if self.corrected_margin < 0 or self.crf_steps < 0:
            raise InputError("corrected_margin and crf_steps must be >= 0")
        if not self.l2sp >= 0 or not self.encoder_lr_factor >= 0:
            raise InputError("training settings l2sp and encoder_lr_factor must be >= 0")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise InputError(f"training setting ema_decay={self.ema_decay!r} must be in (0, 1)")
        if not 0.0 < self.interpolation <= 1.0:
            raise InputError(
                f"training setting interpolation={self.interpolation!r} must be in (0, 1]"
            )
