"""Training and fine-tuning as a generator: ``fit`` yields progress and returns the best model.

From scratch, pass ``SegmentationModel.create(...)``; to fine-tune, pass a loaded model. ``fit``
trains a deep copy, so closing the generator (cancel) leaves the caller's model untouched.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.device import resolve_device, training_precision
from ..core.progress import Progress
from ..errors import InputError
from ..model.checkpoint import SegmentationModel
from ._averaging import WeightAverage
from ._run import (
    Loop,
    Run,
    channel_permutation_for,
    crop_size,
    run_loop,
    validate_run,
    validation_event,
)
from .augment import sample_batch
from .config import COSINE_FLOOR, DEFAULT_MAX_STEPS, TrainConfig
from .losses import segmentation_loss
from .samples import PreparedSample, TrainingSample, check_sample, prepare_sample


@dataclass
class TrainResult:
    """What :func:`fit` returns."""

    model: SegmentationModel
    best_val_iou: float | None
    steps: int
    seconds: float
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    #: Validation IoU of the starting weights (with ``validate_start``), else ``None``.
    start_val_iou: float | None = None
    #: With ``validate_start``, the best trained weights even when they did not beat the start
    #: (then ``model`` is the start); their validation IoU is ``candidate_val_iou``.
    candidate: SegmentationModel | None = None
    candidate_val_iou: float | None = None
    #: With ``selection_confidence``: how sure the gain over the start is of the returned
    #: trained model, else of ``candidate`` (:func:`.evidence.gain_confidence`).
    confidence: float | None = None
    #: With ``guard`` samples: the start's IoU on them, and that of the last checkpoint that
    #: beat the start on validation but was turned away by the guard.
    guard_start: float | None = None
    guard_refused: float | None = None

    @property
    def improved(self) -> bool:
        """Whether the returned model is a trained one, not the start (with ``validate_start``).

        True when a validation after the start beat the start's IoU (the selection keeps a
        candidate only when it is better by more than 1e-4); always True without a scored start.
        """
        if self.start_val_iou is None:
            return True
        return self.best_val_iou is not None and self.best_val_iou > self.start_val_iou


def check_trainable(model: SegmentationModel) -> None:
    """Refuse a model that cannot be trained here: another tool's bioimage.io package."""
    from ..model.foreign import ForeignModel

    if isinstance(model, ForeignModel):
        raise InputError(
            f"{model.info.provenance.get('name', 'this model')} is another tool's bioimage.io "
            "package: it segments, but cannot be fine-tuned here; start from a napari-fcnseg "
            "model (e.g. the bundled one) instead"
        )


def fit(
    model: SegmentationModel,
    train: Sequence[TrainingSample],
    val: Sequence[TrainingSample],
    config: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    provenance: dict[str, Any] | None = None,
    train_weights: Sequence[float] | None = None,
    guard: Sequence[TrainingSample] = (),
    guard_reference: float | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Train a copy of ``model``; yield :class:`Progress` every step, return a :class:`TrainResult`.

    Progress ``info`` holds ``loss``, ``val_iou`` (latest validation, ``None`` before the
    first), ``val_class_iou``, ``phase`` (``"unet"``, ``"crf"`` or ``"validate"``) and
    ``elapsed`` seconds. Validation runs whole ``val`` images through tiled inference every
    ``validate_every`` steps and scores foreground IoU (label > 0) on annotated pixels; with no
    ``val`` samples the training images are used (and the messages say so). The returned model
    is the best by validation IoU, in eval mode on the CPU, with its provenance filled in.

    Parameters
    ----------
    model
        Starting point (untouched: a deep copy is trained).
    train, val
        Samples to train on and to validate on.
    config
        Settings; see :class:`TrainConfig`.
    checkpoint_dir
        When given, ``latest.safetensors`` and ``best.safetensors`` are written there
        (atomically) at every validation.
    provenance
        Extra provenance for the model file, e.g. ``{"data": "path/to/set", "parent": "x"}``.
    train_weights
        Relative share of the training crops drawn from each ``train`` sample (e.g. half from a
        person's corrections, half from replayed data); default: in proportion to annotated
        pixels.
    guard
        With ``validate_start``: samples (not trained on) that a checkpoint which beat the
        start on validation must not score lower on than the start by more than
        ``config.guard_tolerance``, or the start stays the selection.
    guard_reference
        The guard IoU of the model a chain of fine-tunes began from: then a checkpoint must
        also score at least that minus the tolerance (drift does not add up over rounds).
    """
    config.check()
    check_trainable(model)
    if not train:
        raise InputError("no training images: add annotated images to the set first")
    info = model.info
    for sample in [*train, *val, *guard]:
        check_sample(sample, info.num_classes, info.in_channels)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    scale = info.scale if config.scale is None else float(config.scale)  # checked above
    if scale != 1.0 and config.train_crf and config.crf_steps > 0:
        raise InputError(
            f"joint U-Net + CRF training needs scale 1, not {scale:g} (the CRF refines the "
            "image's own pixels); train without the CRF phase, or at scale 1"
        )

    def prepare(s: TrainingSample, at: float = 1.0) -> PreparedSample:
        return prepare_sample(
            s,
            info.in_channels,
            info.normalization,
            corrected_only=config.corrected_only,
            corrected_margin=config.corrected_margin,
            scale=at,
        )

    # The network trains at its working scale; validation predicts whole images as users do
    # (resized by the model) and scores them against the targets at the image's own size.
    train_targets = [prepare(s, scale) for s in train]
    if train_weights is not None and len(train_weights) != len(train):
        raise InputError(
            f"{len(train_weights)} training weights for {len(train)} samples: give one each"
        )
    if not any(t.valid_pixels for t in train_targets):
        raise InputError("the training images have no annotated (or corrected) pixels")
    on_train = not val
    val_samples = list(train) if on_train else list(val)
    if on_train and scale == 1.0:
        val_targets = train_targets
    else:
        val_targets = [prepare(s) for s in val_samples]
    note = " (no validation images: validating on the training images)" if on_train else ""
    parent = {k: v for k, v in info.provenance.items() if k != "parent"}
    extra = {
        "parent": parent or None,
        "train_samples": len(train),
        "val_samples": len(val),
        "validated_on": "train" if on_train else "val",
        "data": [s.name for s in train][:100],
        **(provenance or {}),
    }
    run = Run(
        copy.deepcopy(model).to(device),
        config,
        device,
        rng,
        time.monotonic(),
        val_samples,
        val_targets,
        Path(checkpoint_dir) if checkpoint_dir else None,
        extra,
        train_targets,
        None if train_weights is None else [float(w) for w in train_weights],
    )
    run.net.info.scale = scale
    run.guard, run.guard_targets = list(guard), [prepare(s) for s in guard]
    run.guard_reference = guard_reference
    stopped_early = yield from _unet_phase(run, train_targets, note)
    if config.train_crf and config.crf_steps > 0:
        from ._crf_phase import crf_phase

        stopped_early = (yield from crf_phase(run, train, train_targets, note)) or stopped_early
    net = run.net
    candidate = None
    start_iou = next((h["val_iou"] for h in run.history if h["phase"] == "start"), None)
    if run.trained_state is not None and start_iou is not None and run.best_iou == start_iou:
        # The start stays the selection; the best trained weights are offered beside it.
        candidate = copy.deepcopy(net)
        candidate.load_state_dict(run.trained_state)
        candidate.info.provenance = run.describe(run.trained_iou)
        candidate = _finished(candidate)
    if run.best_state is not None:
        if run.best_info_crf is None and getattr(net, "crf", None) is not None:
            from ..model.combined import detach_crf

            detach_crf(net)  # the CRF did not beat the U-Net alone on validation
        net.load_state_dict(run.best_state)
    net.info.provenance = run.describe(run.best_iou, _best_class_iou(run.history, run.best_iou))
    scored = run.trained_iou if candidate is not None else run.best_iou
    confidence = next(
        (h["confidence"] for h in run.history if h["phase"] != "start" and h["val_iou"] == scored),
        None,
    )
    return TrainResult(
        _finished(net),
        run.best_iou,
        run.step,
        run.elapsed,
        stopped_early,
        run.history,
        start_iou,
        candidate,
        run.trained_iou if candidate is not None else None,
        confidence,
        run.start_guard,
        run.refused_guard,
    )


def _finished(net: SegmentationModel) -> SegmentationModel:
    """Return the model as fit returns it: on the CPU, usual memory layout, eval mode."""
    net = net.cpu()
    net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return net.eval()


def _unet_phase(
    run: Run, targets: list[PreparedSample], note: str
) -> Generator[Progress, None, bool]:
    config, net = run.config, run.net
    crop = crop_size(net, targets, config.crop)
    permute = channel_permutation_for(config, net.info.in_channels)
    annotated = sum(t.valid_pixels for t in targets)
    per_epoch = max(1, math.ceil(annotated / crop**2 / config.batch_size))
    limits = [n for n in (config.max_steps, config.epochs and config.epochs * per_epoch) if n]
    max_steps = min(limits) if limits else (None if config.max_seconds else DEFAULT_MAX_STEPS)
    deadline = config.max_seconds
    if deadline is not None and config.train_crf and config.crf_steps > 0:
        deadline *= 1.0 - config.crf_time_fraction
    crf_total = config.crf_steps if config.train_crf else 0
    _set_trainable(net, config.trainable)
    optimizer = torch.optim.Adam(_parameter_groups(net, config), lr=config.learning_rate)
    anchor = _anchor(net) if config.l2sp > 0 else None
    averaging = WeightAverage(net, config.ema_decay, config.interpolation)
    run.averaging = averaging if averaging.active else None
    dtype = training_precision(config.precision, run.device)
    # Channels-last convolutions are faster on CPU (oneDNN) and on CUDA; fit() converts back.
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    net.to(memory_format=layout)  # type: ignore[call-overload]
    validation_cost = 0.0
    if config.validate_start:
        t0 = time.monotonic()
        val_iou, val_class, _ = validate_run(run, float("nan"), phase="start")
        validation_cost = time.monotonic() - t0
        yield validation_event(run, max_steps or 0, float("nan"), val_iou, val_class, note)
    _train_mode(net, config)

    def step() -> float:
        if config.schedule == "cosine":
            done = _progress_fraction(run, max_steps, deadline)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * _cosine(done)
        x, y = sample_batch(
            targets,
            config.batch_size,
            crop,
            run.rng,
            augment=config.augment,
            channel_permutation=permute,
            legacy_elastic=config.legacy_elastic,
            weights=run.train_weights,
            appearance=config.appearance,
            channel_noise=config.channel_noise,
        )
        optimizer.zero_grad(set_to_none=True)
        inputs = torch.from_numpy(x).to(run.device).contiguous(memory_format=layout)
        with torch.autocast(run.device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = net(inputs)
        loss = segmentation_loss(logits.float(), torch.from_numpy(y).to(run.device), config.loss)
        if anchor is not None:
            loss = loss + config.l2sp * _l2sp(net, anchor)
        loss.backward()
        optimizer.step()
        averaging.update(net)
        return float(loss.detach())

    validated = [run.elapsed]  # when the last validation ended (for validate_seconds)

    def validate(loss: float) -> tuple[float, float, bool]:
        scores = validate_run(run, loss)
        validated[0] = run.elapsed
        return scores

    def is_due() -> bool:
        by_time = config.validate_seconds is not None and (
            run.elapsed - validated[0] >= config.validate_seconds
        )
        return run.step % config.validate_every == 0 or by_time

    loop = Loop(
        step=step,
        validate=validate,
        total=lambda times: _total(run, max_steps, deadline, times) + crf_total,
        closing_total=lambda: run.step + crf_total,
        max_steps=max_steps,
        deadline=deadline,
        is_due=is_due,
        patience=config.patience,
        label="step",
        phase="unet",
        note=note,
        after_validation=lambda: _train_mode(net, config),
    )
    try:
        stopped = yield from run_loop(run, loop, validation_cost)
    finally:
        _set_trainable(net, "all")  # the returned model (and a CRF phase) has every weight free
    run.averaging = None  # a CRF phase goes on from the raw weights
    return stopped


def _train_mode(net: torch.nn.Module, config: TrainConfig) -> None:
    """Training mode; with ``freeze_batchnorm`` the BatchNorm layers keep their statistics."""
    net.train()
    if config.freeze_batchnorm:
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def _set_trainable(net: torch.nn.Module, trainable: str) -> None:
    """Let gradients reach only the weights ``trainable`` names (:data:`.config.TRAINABLE`).

    With ``"decoder"`` no encoder weight needs a gradient, so autograd records nothing of the
    encoder's forward pass and the backward pass stops at the skip connections.
    """
    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.InstanceNorm2d)
    for module_name, module in net.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            path = f".{module_name}.{name}"
            if trainable == "decoder":
                free = ".encoders." not in path
            elif trainable == "norm":
                free = isinstance(module, norms) or ".head." in path
            else:
                free = True
            parameter.requires_grad_(free)


def _parameter_groups(net: torch.nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Return parameter groups of the trainable weights: the encoder at ``encoder_lr_factor``."""
    if config.encoder_lr_factor == 1.0:  # one group, as before the factor existed
        params = [p for p in net.parameters() if p.requires_grad]
        return [{"params": params, "lr": config.learning_rate, "initial_lr": config.learning_rate}]
    encoder: list[torch.nn.Parameter] = []
    rest: list[torch.nn.Parameter] = []
    for name, parameter in net.named_parameters():
        if not parameter.requires_grad:
            continue
        (encoder if ".encoders." in f".{name}" else rest).append(parameter)
    groups = [
        {"params": rest, "lr": config.learning_rate, "initial_lr": config.learning_rate},
        {
            "params": encoder,
            "lr": config.learning_rate * config.encoder_lr_factor,
            "initial_lr": config.learning_rate * config.encoder_lr_factor,
        },
    ]
    return [g for g in groups if g["params"]]


def _anchor(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return a copy of the starting weights, for the L2-SP pull."""
    return {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}


def _l2sp(net: torch.nn.Module, anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    """Squared distance of the weights from the starting weights."""
    return sum(  # type: ignore[return-value]
        ((p - anchor[n]) ** 2).sum() for n, p in net.named_parameters() if n in anchor
    )


def _progress_fraction(run: Run, max_steps: int | None, deadline: float | None) -> float:
    """How far the U-Net phase has come, in [0, 1]: the larger of steps and time used."""
    fractions = [0.0]
    if max_steps:
        fractions.append(run.step / max_steps)
    if deadline:
        fractions.append(run.elapsed / deadline)
    return min(1.0, max(fractions))


def _cosine(done: float) -> float:
    """Learning-rate factor of the cosine schedule after ``done`` of the run."""
    return COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * done))


def _total(run: Run, max_steps: int | None, deadline: float | None, times: list[float]) -> int:
    """Estimate the steps of the U-Net phase, from the step time under a time budget."""
    estimate = max_steps
    if deadline is not None and times:
        by_time = run.step + int(max(0.0, deadline - run.elapsed) / float(np.mean(times[-20:])))
        estimate = by_time if estimate is None else min(estimate, by_time)
    return max(run.step, estimate or run.step)


def _best_class_iou(history: list[dict[str, Any]], best: float | None) -> float | None:
    for entry in history:
        if entry["val_iou"] == best:
            return entry["val_class_iou"]
    return None
