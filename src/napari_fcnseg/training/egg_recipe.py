"""The recipe of the bundled egg-chamber models: data, network and training settings.

``scripts/train_default_model.py`` (the shipped model) and ``benchmarks/bench_quality.py``
(leave-one-out figures) both build on these functions, so the benchmark measures the recipe the
shipped model was made with.

Schedule: the network is first trained on synthetic egg chambers only (``PRETRAIN_STEPS``), then
on synthetic plus real annotated slices (``FINETUNE_STEPS``), the real slices repeated so that
about half the crops come from them.

``structure=True`` is the same recipe for the four tissue structures (background, follicle
cells, nurse-cell nuclei, nurse-cell cytoplasm; :data:`STRUCTURE_CLASS_NAMES`, numbered as the
real ``annot_struct`` files and the synthetic generator number them) instead of background /
egg chamber.
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.progress import Progress
from ..errors import InputError
from ..model.checkpoint import SegmentationModel
from .samples import TrainingSample
from .synthetic import CLASS_NAMES, CONFOCAL, SHARP, Optics, make_egg_chamber_slice
from .trainer import TrainConfig, TrainResult, fit

EGG_CLASS_NAMES = ["background", "egg chamber"]
#: The four structures of the ``structure`` variant, numbered as in ``annot_struct``.
STRUCTURE_CLASS_NAMES = list(CLASS_NAMES)
SYNTHETIC_SHAPE = (512, 768)
SYNTHETIC_TRAIN = 24
SYNTHETIC_VAL = 4
PRETRAIN_STEPS = 400
FINETUNE_STEPS = 300
REAL_NAMES = ("insitu4174", "insitu7331", "insitu7544")


#: Foreground probability of the trained network above which the recipe's egg-chamber model
#: (its second stage) calls a pixel egg chamber: on real slices it did not see, its masks
#: reach past the annotated outline at 0.5. The highest threshold that lowered no held-out
#: slice by more than 0.005 (leave-one-out and leave-one-stain-out, holes filled; higher ones
#: gained more on leave-one-out but cut into a stain the model had not seen):
#: benchmarks/README.md, "Egg chambers on real slices". The synthetic-only first stage keeps
#: 0.5 (a higher threshold lowers it).
EGG_FOREGROUND_THRESHOLD = 0.55

#: How the egg-chamber recipe's synthetic slices are rendered, slice by slice in turn: two with
#: edges that fall off over several pixels with a faint glow, as the real slices' do, to one
#: with sharp edges. With sharp edges alone the network took the glow beside unseen chambers
#: for chamber; with glowing ones alone it lost the dim insides of chambers on sharp slices;
#: one to one kept less of the gain on real slices than two to one (benchmarks/README.md,
#: "The synthetic look"). The four-structure variant uses the same look: it raised the worst
#: unseen slice's mean F1 and the mean, though not every slice ("The four structures").
EGG_OPTICS: tuple[Optics, ...] = (CONFOCAL, SHARP, CONFOCAL)
#: Whether the four-structure recipe's synthetic chains end in an elongated germarium of
#: densely packed cells (``make_egg_chamber_slice(tips=True)``). The real ``annot_struct`` files
#: label the tip of a chain, up to about 50 px across, follicle cells only, and the network
#: takes its packed nuclei for nurse-cell nuclei; but drawn so, the tips lowered every unseen
#: slice (benchmarks/README.md, "Where the follicle cells go wrong, and four probes that did
#: not mend it"), so the recipe does not draw them.
STRUCTURE_TIPS = False
#: Named looks for probes (``bench_quality.py --look NAME``).
LOOKS: dict[str, tuple[Optics, ...]] = {
    "sharp": (SHARP,),
    "confocal": (CONFOCAL,),
    "mixed": (SHARP, CONFOCAL),
    "mostly-confocal": (CONFOCAL, SHARP, CONFOCAL),
}


def recipe_optics(structure: bool = False) -> tuple[Optics, ...]:
    """Return the optics of the recipe's synthetic slices, used in turn (both variants alike)."""
    del structure  # one look for both variants since the four-structure folds were measured
    return EGG_OPTICS


def egg_chamber_model(seed: int = 0, *, structure: bool = False) -> SegmentationModel:
    """Build a new default-size U-Net for egg chambers (depth 4, 16 base features, RGB).

    The initial weights are drawn from ``seed`` (the global torch generator is left as it was),
    so that a re-run of the recipe starts from the same network. ``structure``: four classes
    (:data:`STRUCTURE_CLASS_NAMES`) instead of two. Its file says ``fill_holes``.
    """
    classes = STRUCTURE_CLASS_NAMES if structure else EGG_CLASS_NAMES
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SegmentationModel.create(classes, 3, depth=4, base_features=16)
    # Egg chambers are solid: their labels never have holes (napari_fcnseg.core.holes).
    model.info.fill_holes = True
    return model


def _labels(structures: np.ndarray, structure: bool) -> np.ndarray:
    """Return the recipe's labels of a four-structure label image: as they are, or egg (> 0)."""
    return structures.astype(np.uint8) if structure else (structures > 0).astype(np.uint8)


def synthetic_egg_samples(
    count: int,
    seed: int,
    shape: tuple[int, int] | None = None,
    *,
    structure: bool = False,
    optics: Optics | Sequence[Optics] | None = None,
    tips: bool | None = None,
    stalks: bool = False,
) -> list[TrainingSample]:
    """``count`` synthetic RGB slices (``shape``, default :data:`SYNTHETIC_SHAPE`) with labels.

    Slice ``i`` is rendered with ``optics[i % len(optics)]`` (default :func:`recipe_optics`);
    other than the generator's default, its :attr:`~.synthetic.Optics.tag` ends the name.
    ``tips``: chains end in an elongated germarium (``make_egg_chamber_slice``; the name then
    ends in ``-tips``); by default :data:`STRUCTURE_TIPS` for the four-structure slices, never
    for the egg-chamber recipe's. ``stalks``: neighbouring chambers are joined by stalks of dim
    tissue labelled background (a probe; the name then ends in ``-stalks``).
    """
    if tips is None:
        tips = structure and STRUCTURE_TIPS
    shape = shape or SYNTHETIC_SHAPE
    if optics is None:
        optics = recipe_optics(structure)
    looks = (optics,) if isinstance(optics, Optics) else tuple(optics)
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        look = looks[i % len(looks)]
        image, labels = make_egg_chamber_slice(
            shape, rng=rng, optics=look, tips=tips, stalks=stalks
        )
        name = f"synthetic-{seed}-{i}" + (f"-{look.tag}" if look.tag else "")
        name += tips * "-tips" + stalks * "-stalks"
        samples.append(TrainingSample(image, _labels(labels, structure), name=name))
    return samples


def real_egg_samples(
    folder: str | os.PathLike[str], names: Sequence[str] = REAL_NAMES, *, structure: bool = False
) -> list[TrainingSample]:
    """Read the shared drosophila-ovary slices (``image/NAME.jpg``, ``annot_struct/NAME.png``)."""
    from skimage import io as skio

    folder = Path(folder)
    return [
        TrainingSample(
            np.asarray(skio.imread(folder / "image" / f"{name}.jpg")),
            _labels(np.asarray(skio.imread(folder / "annot_struct" / f"{name}.png")), structure),
            name=name,
        )
        for name in names
    ]


def pretrain_config(seed: int = 0, device: str = "auto") -> TrainConfig:
    """Return the settings of the synthetic-only stage."""
    return _stage_config(PRETRAIN_STEPS, 2e-3, seed, device)


def finetune_config(seed: int = 0, device: str = "auto") -> TrainConfig:
    """Return the settings of the synthetic + real stage."""
    return _stage_config(FINETUNE_STEPS, 1e-3, seed + 1, device)


def _stage_config(steps: int, learning_rate: float, seed: int, device: str) -> TrainConfig:
    return TrainConfig(
        max_steps=steps,
        batch_size=8,
        crop=256,
        learning_rate=learning_rate,
        validate_every=50,
        patience=100,
        seed=seed,
        device=device,
        # The recipe's settings since its first version (its leave-one-out figures in the
        # README were measured with them): no BatchNorm re-estimation, float32, the usual
        # memory layout and SciPy-resampled elastic deformation.
        recalibrate_batchnorm=False,
        precision="float32",
        channels_last=False,
        legacy_elastic=True,
    )


def train_egg_chamber_model(
    real: Sequence[TrainingSample],
    *,
    seed: int = 0,
    device: str = "auto",
    pretrained: SegmentationModel | None = None,
    changes: Mapping[str, Any] | None = None,
    structure: bool = False,
    optics: Optics | Sequence[Optics] | None = None,
    tips: bool | None = None,
    real_weight: int = 1,
    stalks: bool = False,
) -> Generator[Progress, None, TrainResult]:
    """Run the recipe (both stages, or only the second from ``pretrained``).

    ``changes`` replaces settings of both stages' :class:`TrainConfig` (probes of the recipe,
    e.g. ``{"channel_noise": True}``); the shipped model uses none. ``structure``: the
    four-structure variant (``real`` must then hold the four classes too). ``optics``: the
    synthetic slices' (default :func:`recipe_optics`; a probe may give others), ``tips`` whether
    their chains end in a germarium (default :data:`STRUCTURE_TIPS` for ``structure``, else
    no; see :func:`synthetic_egg_samples`), ``stalks`` whether stalks join their chambers (a
    probe; default no). ``real_weight``: the real slices are repeated this
    many times more than the recipe's (a probe; 1: about as many copies as synthetic slices,
    so that with their larger size about 60% of the crops are real). The egg-chamber
    model it returns calls a pixel foreground where the trained network gave it more than
    :data:`EGG_FOREGROUND_THRESHOLD` (:func:`shift_foreground_threshold`).
    """
    if real_weight < 1:  # before any training
        raise InputError(f"real_weight={real_weight!r} must be a whole number of at least 1")
    val, synthetic = _synthetic_sets(seed, structure, optics, tips, stalks)
    if pretrained is None:
        result = yield from _pretrain(synthetic, val, seed, device, changes, structure)
        pretrained = result.model
    repeats = real_weight * max(1, round(len(synthetic) / max(1, len(real)))) if real else 0
    mixed = [*synthetic, *(list(real) * repeats)]
    config = replace(finetune_config(seed, device), **(changes or {}))
    result = yield from fit(pretrained, mixed, val, config)
    if not structure:
        shift_foreground_threshold(result.model, EGG_FOREGROUND_THRESHOLD)
    return result


def shift_foreground_threshold(model: SegmentationModel, threshold: float) -> None:
    """Make ``model``'s most probable class foreground only where it was above ``threshold``.

    Adds log(threshold / (1 - threshold)) to the background logit (the head's bias), so that
    every user of the probabilities (labels, Refine with CRF, uncertainty, a later fine-tune)
    sees the recalibrated model, and records it in the provenance. Two classes: class 1 wins
    exactly where its old probability was above ``threshold``.
    """
    if not 0 < threshold < 1:
        raise InputError(f"a foreground threshold must be between 0 and 1, not {threshold!r}")
    shift = math.log(threshold / (1 - threshold))
    bias = model.unet.head.bias
    assert bias is not None  # the U-Net's head always has one
    with torch.no_grad():
        bias[0] += shift
    model.info.provenance["background_logit_shift"] = round(shift, 6)
    model.info.provenance["foreground_threshold"] = threshold


def pretrain_egg_chamber_model(
    seed: int = 0,
    device: str = "auto",
    changes: Mapping[str, Any] | None = None,
    *,
    structure: bool = False,
    optics: Optics | Sequence[Optics] | None = None,
    tips: bool | None = None,
    stalks: bool = False,
) -> Generator[Progress, None, TrainResult]:
    """Run the synthetic-only stage alone (shared by the leave-one-out folds)."""
    val, synthetic = _synthetic_sets(seed, structure, optics, tips, stalks)
    return (yield from _pretrain(synthetic, val, seed, device, changes, structure))


def _synthetic_sets(
    seed: int,
    structure: bool,
    optics: Optics | Sequence[Optics] | None,
    tips: bool | None,
    stalks: bool = False,
) -> tuple[list[TrainingSample], list[TrainingSample]]:
    """Return the recipe's synthetic validation and training slices."""
    look = partial(
        synthetic_egg_samples, structure=structure, optics=optics, tips=tips, stalks=stalks
    )
    return look(SYNTHETIC_VAL, seed + 1000), look(SYNTHETIC_TRAIN, seed)


def _pretrain(
    synthetic: Sequence[TrainingSample],
    val: Sequence[TrainingSample],
    seed: int,
    device: str,
    changes: Mapping[str, Any] | None,
    structure: bool = False,
) -> Generator[Progress, None, TrainResult]:
    return (
        yield from fit(
            egg_chamber_model(seed, structure=structure),
            synthetic,
            val,
            replace(pretrain_config(seed, device), **(changes or {})),
            provenance={"stage": "pretrain on synthetic egg chambers"},
        )
    )
