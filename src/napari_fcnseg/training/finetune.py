"""The fine-tune policy: learn from a person's corrections without getting worse.

One round, as the **Fine-tune** form and ``fcnseg train --init`` run it (:func:`fine_tune`):

1. Every correction so far (this round's and the earlier rounds') is split into training
   pixels and held-out blocks (:mod:`.holdout`); the held-out blocks are never trained on.
2. Crops are drawn half from the corrections and half from a replay of the model's original
   training data (:mod:`.replay`), so the network does not forget what it knew.
3. The starting model is scored on the held-out pixels first: it is candidate zero of the
   checkpoint selection. A fine-tuned checkpoint replaces it only when it scores higher there
   *surely*: in 90% of the paired bootstrap resamples of the held-out blocks that tell them apart
   (:mod:`.evidence`); a gain of a few thousandths on a dozen blocks is luck as often as not.
   It must also not score lower by more than ``guard_tolerance`` on a guard: slices of the
   model's original training data that no round trains on (:func:`.replay.guard_samples`),
   measured against the model the chain of rounds began from (its score is written into every
   fine-tuned file), so that small losses cannot add up over rounds. On real slices, sure gains
   on the corrected slices' held-out blocks came with losses on the next slice of another
   stain, and the chain's fall on the guard turned the worst of them away.
   Otherwise the start is kept and the best fine-tuned weights are offered beside it.
4. Only the decoder and the head learn (``trainable="decoder"``); the encoder runs without
   gradients, which makes a step cheaper and leaves the low-level filters as they were.
   BatchNorm keeps the starting model's statistics (one or two slices are too few to
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

from ..core.progress import Progress
from ..errors import InputError
from ..model.checkpoint import ModelInfo, SegmentationModel
from .config import FineTuneSettings
from .holdout import held_out_pixels, split_holdout
from .replay import REPLAY_KEY, guard_samples, replay_samples, replay_source
from .samples import TrainingSample
from .trainer import TrainResult, fit

__all__ = ["AUTO", "FineTuneOutcome", "FineTuneSettings", "fine_tune"]

#: "auto" replay: draw the replay source the model file names.
AUTO = "auto"


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
    #: How sure the gain of ``new_score`` over ``start_score`` is: the share of paired
    #: bootstrap resamples of the held-out blocks in which it is higher (:mod:`.evidence`).
    confidence: float | None = None
    #: IoU on the guard (the model's original training data, not trained on) of the start and
    #: of the fine-tuned model kept, or of the last one the guard turned away (``None``: no
    #: guard, or no checkpoint beat the start on the held-out pixels; only those are scored).
    guard_start: float | None = None
    guard_new: float | None = None
    #: Whether the guard turned a fine-tuned model away (so the start stayed active).
    guard_refused: bool = False
    #: The guard IoU of the model the chain of rounds began from, when the start's file said.
    guard_reference: float | None = None

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
        higher = self.start_score is None or self.new_score > self.start_score
        if self.guard_refused and self.guard_new is not None and self.guard_start is not None:
            first = self.guard_reference
            earlier = "" if first is None else f", the first version {first:.3f}"
            verdict = (
                f"but it fell on the model's earlier training data ({self.guard_new:.3f}, "
                f"{old} {self.guard_start:.3f}{earlier}), so {verdict}; for images unlike "
                "that data, fine-tune all weights (no such check)"
            )
        elif not self.improved and higher and self.confidence is not None:
            verdict = (
                f"not a sure gain (higher in {self.confidence:.0%} of resamples of the held-out "
                f"blocks), so {verdict}"
            )
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
    guard: Sequence[TrainingSample] | str | None = AUTO,
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
    guard
        ``"auto"``: ``settings.guard_size()`` samples of the replay source the model file names
        (:func:`.replay.guard_samples`; none of them a corrected slice); a list of samples; or
        ``None`` for no guard.
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
    if isinstance(guard, str):
        if guard != AUTO:
            raise InputError(f"guard={guard!r}: give 'auto', a list of samples or None")
        corrected = {s.name for s in corrections}
        drawn = guard_samples(replay_source(model.info), model.info, count=settings.guard_size())
        guarded = [s for s in drawn if s.name not in corrected]
    else:
        guarded = list(guard or [])
    guard_names = [s.name for s in guarded]
    reference = _guard_reference(model.info, guard_names)
    weights = _weights(len(train), len(replayed), settings.replay_fraction)
    extra = {
        "fine_tune": {
            "corrections": [s.name for s in corrections][:100],
            "held_out_pixels": held_out_pixels(held_out),
            "replayed": len(replayed),
            "guard": {"samples": guard_names[:100], "reference": reference},
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
        guard=guarded,
        guard_reference=reference,
    )
    improved = result.start_val_iou is None or result.improved
    new_score = result.best_val_iou if improved else result.candidate_val_iou
    kept_guard = next(
        (h["guard"] for h in reversed(result.history)
         if h["phase"] != "start" and h["val_iou"] == result.best_val_iou),
        None,
    )  # fmt: skip
    refused = not improved and result.guard_refused is not None
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
        confidence=result.confidence,
        guard_start=result.guard_start,
        guard_new=result.guard_refused if refused else kept_guard if improved else None,
        guard_refused=refused,
        guard_reference=reference,
    )


def _guard_reference(info: ModelInfo, names: list[str]) -> float | None:
    """Return the guard IoU that the start's file records for the first model of its chain.

    Only when that file was fine-tuned with the same guard samples (else the scores differ).
    """
    recorded = info.provenance.get("fine_tune")
    guard = recorded.get("guard") if isinstance(recorded, dict) else None
    if not names or not isinstance(guard, dict) or guard.get("samples") != names[:100]:
        return None
    reference = guard.get("reference")
    return float(reference) if isinstance(reference, int | float) else None


def _weights(corrections: int, replayed: int, fraction: float) -> list[float] | None:
    """Per-sample crop shares: ``fraction`` for the replayed samples, the rest for corrections."""
    if not replayed:
        return None
    return [(1.0 - fraction) / corrections] * corrections + [fraction / replayed] * replayed
