"""One round of the correction loop in a models folder: remember, fine-tune, keep the better.

The **Fine-tune** form runs :func:`correction_round`. A round

1. adds the slices a person corrected or checked to the folder's corrections set
   (``FOLDER/corrections``, an :class:`~.dataset.AnnotatedSet`; a slice corrected again
   replaces its earlier item), so every round learns from every correction so far;
2. fine-tunes the base model on that whole set with the core policy (:func:`.finetune.fine_tune`:
   held-out blocks, replay, the start as candidate zero);
3. saves the result as the next version of the folder's :class:`~..model.store.ModelStore`,
   active only when it beat the base model on the held-out pixels without falling on the
   guard of the model's earlier data (:func:`.finetune.fine_tune`). Otherwise the base stays
   active and the fine-tuned weights are still saved, inactive, for a person to choose.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.progress import Progress
from ..errors import InputError
from ..model.checkpoint import load_model
from ..model.default import default_model_path
from ..model.store import ModelStore
from .dataset import AnnotatedSet, safe_item_name
from .finetune import FineTuneOutcome, FineTuneSettings, fine_tune
from .samples import TrainingSample, squeeze_channel

#: The corrections set's folder inside a models folder.
CORRECTIONS = "corrections"


@dataclass
class RoundResult:
    """What a round returns: the outcome and the versions involved.

    ``version`` is the new store version (``None`` when nothing was scored in the budget);
    ``parent`` names the model the round started from; ``active`` is the store's active
    version afterwards.
    """

    outcome: FineTuneOutcome
    version: str | None
    parent: str
    active: str | None
    corrections: int

    def message(self) -> str:
        """Say what happened in numbers, e.g. ``v003: 0.940 on your held-out ..., v002 had``."""
        new = self.version or "the fine-tuned model"
        text = self.outcome.summary(new, self.parent)
        if not self.outcome.improved and self.version is not None:
            text += f" (choose {self.version} under 'version' to use it anyway)"
        return text


def base_model(recorded: str, store: ModelStore) -> tuple[Path, str]:
    """Choose the model to fine-tune and its name: the one that made the labels, if known.

    ``recorded`` is what a labels layer says made it (a store version, a file path or
    ``"default"``). Otherwise the store's active version, else the bundled model.
    """
    if recorded and recorded in store:
        return store.path(recorded), recorded
    if recorded and Path(recorded).is_file():
        path = Path(recorded)
    elif store.active is not None:
        return store.path(), store.active
    elif (bundled := default_model_path()) is not None:
        path = bundled
    else:
        raise InputError(
            "the model that made these labels is unknown or gone, and the models folder has "
            "none: segment the image again with a model file, then fine-tune"
        )
    same_folder = path.parent.resolve() == store.folder.resolve()
    return path, path.stem if same_folder else path.name


def remember_corrections(
    store: ModelStore, samples: Sequence[TrainingSample], class_names: list[str]
) -> AnnotatedSet:
    """Add ``samples`` to the folder's corrections set (created on first use) and return it."""
    corrections = AnnotatedSet.create(store.folder / CORRECTIONS, class_names)
    for sample in samples:
        corrections.add_item(
            squeeze_channel(sample.image),
            sample.labels,
            sample.corrected,
            name=safe_item_name(sample.name),
            split="train",
        )
    return corrections


def correction_round(
    store: ModelStore,
    samples: Sequence[TrainingSample],
    settings: FineTuneSettings,
    *,
    recorded_model: str = "",
    note: str = "",
) -> Generator[Progress, None, RoundResult]:
    """Return the job of one round (module docstring), which yields progress.

    The job returns a :class:`RoundResult`. The inputs and the settings are checked at once,
    before the job runs: :class:`InputError` when there is nothing to learn from or no model
    to start from.
    """
    if not samples:
        raise InputError(
            "nothing to learn from yet: correct some labels (or mark a slice as checked)"
        )
    settings.check()
    path, parent = base_model(recorded_model, store)
    return _round(store, samples, settings, path, parent, note)


def _round(
    store: ModelStore,
    samples: Sequence[TrainingSample],
    settings: FineTuneSettings,
    path: Path,
    parent: str,
    note: str,
) -> Generator[Progress, None, RoundResult]:
    yield Progress(0, 0, f"loading {parent}")
    model = load_model(path)
    corrections = remember_corrections(store, samples, model.info.class_names)
    every = corrections.load_samples()
    outcome = yield from fine_tune(model, every, settings, provenance={"fine_tuned_from": parent})
    note = note or f"fine-tuned on {len(every)} corrected slice(s)"
    version = None
    if outcome.improved:
        version = store.add(outcome.model, note, parent=parent, activate=True)
    elif outcome.candidate is not None:
        version = store.add(outcome.candidate, f"{note}; not better", parent=parent, activate=False)
    return RoundResult(outcome, version, parent, store.active, len(every))
