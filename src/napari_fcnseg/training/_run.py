"""The state of one :func:`~.trainer.fit` call, shared by its U-Net and CRF phases.

:class:`Run` keeps the step count, the clock, the best weights and the history, and saves the
checkpoints; :func:`validate_run` scores the current (or averaged) weights and records them.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.progress import Progress
from ..model.checkpoint import SegmentationModel, save_model
from ._averaging import WeightAverage
from ._batchnorm import recalibrate_batchnorm
from ._validation import validate
from .config import TrainConfig
from .evidence import gain_confidence
from .samples import PreparedSample, TrainingSample


@dataclass
class Run:
    """State shared by the phases of one :func:`fit` call."""

    net: SegmentationModel
    config: TrainConfig
    device: torch.device
    rng: np.random.Generator
    start: float
    val: Sequence[TrainingSample]
    val_targets: list[PreparedSample]
    checkpoint_dir: Path | None
    provenance: dict[str, Any]
    train_targets: list[PreparedSample]
    train_weights: list[float] | None = None
    step: int = 0
    best_iou: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_info_crf: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    trained_iou: float | None = None
    trained_state: dict[str, torch.Tensor] | None = None
    averaging: WeightAverage | None = None
    #: Per-block counts of the start's validation (with ``validate_start``), for the evidence.
    start_blocks: np.ndarray | None = None
    #: Samples a checkpoint must not score lower on than the start (``guard_tolerance``).
    guard: Sequence[TrainingSample] = ()
    guard_targets: list[PreparedSample] = field(default_factory=list)
    #: Seconds one scoring of the guard took (the start's), kept free before the deadline.
    guard_seconds: float = 0.0
    #: IoU on the guard of the start, and of the last checkpoint it turned away (if any).
    start_guard: float | None = None
    refused_guard: float | None = None
    #: IoU on the same guard of the model a chain of fine-tunes began from (its file says),
    #: so that drift cannot add up over rounds; ``None``: the start is the reference.
    guard_reference: float | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def record(self, phase: str, loss: float, scores: dict[str, Any], with_crf: bool) -> bool:
        """Log a validation; keep the weights and save checkpoints; True when it improved.

        A trained checkpoint improves on the selection when its IoU is higher and, with
        ``selection_confidence``, when its gain over the start is that sure
        (:func:`.evidence.gain_confidence` over the validation blocks).
        """
        iou = scores["iou"]
        improved = not math.isnan(iou) and (self.best_iou is None or iou > self.best_iou + 1e-4)
        confidence = guard = None
        if phase == "start":
            self.start_blocks = scores.get("blocks")
            if self.guard:
                t0 = time.monotonic()
                self.start_guard = self.guard_iou(self.net)
                # A checkpoint's guard scoring takes as long: the loop keeps that time free.
                self.guard_seconds = time.monotonic() - t0
        elif self.start_blocks is not None and self.config.selection_confidence > 0:
            confidence = gain_confidence(self.start_blocks, scores["blocks"])
            improved = improved and confidence >= self.config.selection_confidence
        if improved and phase != "start" and self.start_guard is not None:
            # Scored only for a checkpoint that would be kept: the guard costs little time.
            guard = self.guard_iou(self.net)
            if guard < self.guard_floor():
                improved, self.refused_guard = False, guard
        self.history.append(
            {
                "step": self.step,
                "phase": phase,
                "loss": loss,
                "val_iou": iou,
                "val_class_iou": scores["class_iou"],
                "crf": with_crf,
                "elapsed": self.elapsed,
                "confidence": confidence,
                "guard": guard,
            }
        )
        if improved:
            self.best_iou = iou
            self.best_state = self._state()
            self.best_info_crf = copy.deepcopy(self.net.info.crf)
        trained_better = not math.isnan(iou) and (
            self.trained_iou is None or iou > self.trained_iou + 1e-4
        )
        if self.config.validate_start and phase == "unet" and trained_better:
            self.trained_iou, self.trained_state = iou, self._state()
        if self.checkpoint_dir is not None:
            self.net.info.provenance = self.describe(iou, scores["class_iou"])
            save_model(self.net, self.checkpoint_dir / "latest.safetensors", overwrite=True)
            if improved:
                save_model(self.net, self.checkpoint_dir / "best.safetensors", overwrite=True)
        return improved

    def guard_floor(self) -> float:
        """Return the lowest guard IoU with which a checkpoint may replace the start.

        ``guard_tolerance`` below the reference (the first model of the chain), and never below
        the start minus the tolerance either: a chain of rounds may lose at most that in all.
        """
        assert self.start_guard is not None
        tolerance = self.config.guard_tolerance
        if self.guard_reference is None:
            return self.start_guard - tolerance
        return min(self.guard_reference - tolerance, self.start_guard)

    def guard_iou(self, net: SegmentationModel) -> float:
        """Mean IoU of ``net`` on the guard samples, labels as the model's file says."""
        scores = validate(
            net, self.guard, self.guard_targets, self.device,
            tile=self.config.validation_tile, as_seen=self.config.labels_as_seen,
        )  # fmt: skip
        return float(scores["iou"])

    def _state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}

    def describe(self, iou: float | None, class_iou: float | None = None) -> dict[str, Any]:
        """Provenance for the model file (``save_model`` adds ``saved``).

        A fine-tune's ``fine_tune.guard.reference`` is the guard IoU of the chain's first model
        (this start's, when its file named none), in every file written, checkpoints included,
        so that a chain resumed from any of them keeps one reference.
        """
        provenance = copy.deepcopy(self.provenance)
        tune = provenance.get("fine_tune")
        guard = tune.get("guard") if isinstance(tune, dict) else None
        if isinstance(guard, dict) and self.start_guard is not None:
            reference = self.guard_reference
            guard["reference"] = self.start_guard if reference is None else reference
        return {
            **provenance,
            "trained": _dt.datetime.now(_dt.UTC).isoformat(),
            "steps": self.step,
            "val_iou": iou,
            "val_class_iou": class_iou,
            "seed": self.config.seed,
            "seconds": round(self.elapsed, 1),
            "config": asdict(self.config),
        }


def crop_size(net: SegmentationModel, targets: Sequence[PreparedSample], wanted: int) -> int:
    """``wanted``, at most the largest image side, rounded up to the network's multiple."""
    multiple = net.required_multiple
    largest = max(max(t.image.shape[1:]) for t in targets)
    return -(-min(wanted, largest) // multiple) * multiple


def channel_permutation_for(config: TrainConfig, channels: int) -> bool:
    """Whether to permute channels: as configured, else only for 3-channel (RGB) images."""
    permute = config.channel_permutation
    return channels == 3 if permute is None else permute


def validate_run(
    run: Run, loss: float, *, with_crf: bool = False, phase: str | None = None
) -> tuple[float, float, bool]:
    """Validate (through the CRF layer with ``with_crf``) and record it in ``run``.

    ``phase`` names the entry in the history (default ``"crf"`` or ``"unet"``; ``"start"`` for
    the starting weights, whose BatchNorm statistics are kept as they are). Returns the
    foreground IoU, the class IoU and whether the IoU improved.
    """
    config = run.config
    if config.recalibrate_batchnorm and not config.freeze_batchnorm and phase != "start":
        recalibrate_batchnorm(
            run.net,
            run.train_targets,
            crop=crop_size(run.net, run.train_targets, config.crop),
            batch_size=config.batch_size,
            device=run.device,
            seed=config.seed + run.step,
        )
    swap = run.averaging.swapped_in(run.net) if run.averaging is not None else nullcontext()
    with swap:  # the averaged weights are the ones scored, kept and returned
        scores = validate(
            run.net,
            run.val,
            run.val_targets,
            run.device,
            tile=run.config.validation_tile,
            with_crf=with_crf,
            block=config.selection_block if config.selection_confidence > 0 else None,
            as_seen=config.labels_as_seen,
        )
        name = phase or ("crf" if with_crf else "unet")
        improved = run.record(name, loss, scores, with_crf=with_crf)
    return scores["iou"], scores["class_iou"], improved


def validation_event(
    run: Run, total: int, loss: float, iou: float, class_iou: float, note: str, phase: str = ""
) -> Progress:
    best = f"{run.best_iou:.3f}" if run.best_iou is not None else "-"
    message = f"step {run.step}: validation IoU {iou:.3f} (best {best}){note}"
    info = {
        "loss": loss,
        "val_iou": iou,
        "val_class_iou": class_iou,
        "phase": "validate",
        "elapsed": run.elapsed,
    }
    return Progress(run.step, total, message, info)


@dataclass
class Loop:
    """How one phase of :func:`~.trainer.fit` steps, validates and stops (see :func:`run_loop`).

    ``step`` runs one optimisation step and returns its loss; ``validate`` scores the weights
    and returns (IoU, class IoU, improved); ``total`` estimates the run's total steps from the
    recent step times (for the progress bar). The phase ends at ``max_steps``, when the next
    step and a closing validation would pass ``deadline`` (seconds since the run started), or
    after ``patience`` validations without improvement.
    """

    step: Callable[[], float]
    validate: Callable[[float], tuple[float, float, bool]]
    total: Callable[[list[float]], int]
    max_steps: int | None
    deadline: float | None
    is_due: Callable[[], bool]
    patience: int
    label: str
    phase: str
    note: str
    closing_total: Callable[[], int]
    after_validation: Callable[[], object] = lambda: None
    #: Report the best validation IoU so far with each step (else the latest).
    report_best: bool = False
    #: Steps whose mean time predicts the next one.
    window: int = 20


def run_loop(run: Run, loop: Loop, validation_cost: float = 0.0) -> Generator[Progress, None, bool]:
    """Drive one phase: step, report, validate when due; return True if patience stopped it.

    The U-Net phase and the joint U-Net + CRF phase share this loop; they differ only in what
    a step and a validation do and when a validation is due. A validation closes the phase
    unless the last step was just validated.
    """
    step_times: list[float] = []
    stale, loss_value, val_iou, val_class = 0, float("nan"), None, None
    validated_at = -1
    while loop.max_steps is None or run.step < loop.max_steps:
        mean_step = float(np.mean(step_times[-loop.window :])) if step_times else 0.0
        # Leave time for the closing validation, so that the whole run keeps to the budget.
        reserve = validation_cost + run.guard_seconds
        if loop.deadline is not None and run.elapsed + mean_step + reserve > loop.deadline:
            break
        t0 = time.monotonic()
        loss_value = loop.step()
        run.step += 1
        step_times.append(time.monotonic() - t0)
        total = loop.total(step_times)
        info = {
            "loss": loss_value,
            "val_iou": run.best_iou if loop.report_best else val_iou,
            "val_class_iou": val_class,
            "phase": loop.phase,
            "elapsed": run.elapsed,
        }
        yield Progress(run.step, total, f"{loop.label} {run.step}: loss {loss_value:.4f}", info)
        if loop.is_due():
            t0 = time.monotonic()
            val_iou, val_class, improved = loop.validate(loss_value)
            validation_cost, validated_at = time.monotonic() - t0, run.step
            stale = 0 if improved else stale + 1
            yield validation_event(run, total, loss_value, val_iou, val_class, loop.note)
            loop.after_validation()
            if stale >= loop.patience:
                return True
    last_scored = run.history[-1]["step"] if run.history else None
    if validated_at != run.step and run.step > 0 and last_scored != run.step:
        val_iou, val_class, _ = loop.validate(loss_value)
        yield validation_event(run, loop.closing_total(), loss_value, val_iou, val_class, loop.note)
    return False
