"""Replay: samples of a model's original training data, mixed into every fine-tune.

Trained only on a person's latest correction, a network forgets what it learnt before (cellpose's
maintainers warn of the same, cellpose#522), so a fine-tune also draws crops from the data the
model came from. A model file names that source in its provenance under :data:`REPLAY_KEY`:

* ``{"kind": "synthetic egg chambers", "seed": 0, "shape": [512, 768]}``: the project's
  generator (:mod:`.synthetic`), as the bundled model's recipe used it;
* ``{"kind": "annotated set", "path": "/path/to/set"}``: a user's own set (``fcnseg train``
  records it), replayed while the folder exists.

Fine-tuned models inherit their parent's source. Older files without the key are recognised
by their recipe (the bundled model) or by the set they were trained on.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from ..errors import FcnsegError
from ..model.checkpoint import ModelInfo
from .samples import TrainingSample

log = logging.getLogger(__name__)

#: Key of the replay source in a model file's provenance.
REPLAY_KEY = "replay"
SYNTHETIC_EGGS = "synthetic egg chambers"
ANNOTATED_SET = "annotated set"
_EGG_RECIPE = "napari_fcnseg.training.egg_recipe"
_EGG_STAGE = "pretrain on synthetic egg chambers"


def synthetic_egg_source(seed: int = 0) -> dict[str, Any]:
    """Return the replay source of the bundled recipe: its synthetic egg-chamber generator."""
    from .egg_recipe import SYNTHETIC_SHAPE

    return {"kind": SYNTHETIC_EGGS, "seed": seed, "shape": list(SYNTHETIC_SHAPE)}


def replay_source(info: ModelInfo) -> dict[str, Any] | None:
    """Return the replay source a model file names (or implies), or ``None`` when it has none."""
    provenance = info.provenance
    for level in _lineage(provenance):
        source = level.get(REPLAY_KEY)
        if isinstance(source, dict) and source.get("kind") in (SYNTHETIC_EGGS, ANNOTATED_SET):
            return dict(source)
        if level.get("recipe") == _EGG_RECIPE or level.get("stage") == _EGG_STAGE:
            return synthetic_egg_source()
    data = provenance.get("data")
    if isinstance(data, str) and Path(data).is_dir():
        return {"kind": ANNOTATED_SET, "path": data}
    return None


def _lineage(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the provenance and its parents' (``parent`` entries), nearest first."""
    out: list[dict[str, Any]] = []
    level: Any = provenance
    while isinstance(level, dict) and len(out) < 32:
        out.append(level)
        level = level.get("parent")
    return out


def replay_samples(
    source: dict[str, Any] | None, info: ModelInfo, *, count: int
) -> list[TrainingSample]:
    """Up to ``count`` training samples of ``source`` that fit the model (classes, channels).

    Returns an empty list (and logs why) when the source is missing, gone or does not fit, so
    a fine-tune then learns from the corrections alone.
    """
    return _draw(source, info, count, split="train", seed_offset=0)


def guard_samples(
    source: dict[str, Any] | None, info: ModelInfo, *, count: int
) -> list[TrainingSample]:
    """Up to ``count`` samples of ``source`` that a fine-tune does not train on.

    They stand for what the model already did well: a fine-tuned checkpoint must not score
    lower on them than the start (:class:`~.config.FineTuneSettings`, ``guard_tolerance``).
    From the synthetic generator: other slices than the replayed ones (seed +
    :data:`GUARD_SEED_OFFSET`); from an annotated set: its validation items. Empty (logged)
    where :func:`replay_samples` would be.
    """
    return _draw(source, info, count, split="val", seed_offset=GUARD_SEED_OFFSET)


#: The guard's synthetic slices are drawn with the replay's seed plus this.
GUARD_SEED_OFFSET = 1000


def _draw(
    source: dict[str, Any] | None, info: ModelInfo, count: int, *, split: str, seed_offset: int
) -> list[TrainingSample]:
    if source is None or count <= 0:
        return []
    kind = source.get("kind")
    if kind == SYNTHETIC_EGGS:
        from .egg_recipe import STRUCTURE_CLASS_NAMES

        structure = list(info.class_names) == list(STRUCTURE_CLASS_NAMES)
        if info.in_channels != 3 or not (info.num_classes == 2 or structure):
            log.info(
                "no replay: synthetic egg chambers need an RGB model of egg chambers (2 classes) "
                "or of the four structures (%s)",
                ", ".join(STRUCTURE_CLASS_NAMES),
            )
            return []
        shape = tuple(int(v) for v in source.get("shape", (512, 768)))
        seed = int(source.get("seed", 0)) + seed_offset
        return list(_synthetic(count, seed, (shape[0], shape[1]), structure))
    if kind == ANNOTATED_SET:
        from .dataset import AnnotatedSet

        try:
            samples = AnnotatedSet.open(str(source.get("path", ""))).load_samples(split)
        except (FcnsegError, OSError) as exc:
            log.info("no replay from %s: %s", source.get("path"), exc)
            return []
        return samples[:count]
    log.info("no replay: unknown source %r", kind)
    return []


@functools.lru_cache(maxsize=4)
def _synthetic(
    count: int, seed: int, shape: tuple[int, int], structure: bool
) -> tuple[TrainingSample, ...]:
    # Cached: drawing a slice takes a while, and each fine-tune round replays the same ones.
    from .egg_recipe import synthetic_egg_samples

    return tuple(synthetic_egg_samples(count, seed, shape, structure=structure))
