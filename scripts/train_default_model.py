"""Train the bundled default egg-chamber model and write its model card.

    python scripts/train_default_model.py [--data ../shared/data/drosophila_ovary] [--overwrite]
    python scripts/train_default_model.py --out /tmp/again.safetensors --compare default
    python scripts/train_default_model.py --structure   # the four-structure variant
    python scripts/train_default_model.py --structure --from-stage1 FIRST.safetensors

Runs the recipe in ``napari_fcnseg.training.egg_recipe`` (synthetic pretraining, then synthetic
plus the three real annotated slices) with fixed seeds and fixed step counts, on the CPU. Writes
``src/napari_fcnseg/models/egg_chambers.safetensors`` (with ``--structure``, the same recipe for
background / follicle cells / nurse-cell nuclei / nurse-cell cytoplasm:
``egg_structure.safetensors``, bundled as ``egg-structure`` once it is there). ``--compare
MODEL`` checks the new weights tensor by tensor against a model file (``default``: the shipped
one) and exits with status 1 when they differ. Weights repeat exactly with the same torch
version, processor type and thread count; elsewhere floating-point rounding may differ (README,
"The bundled models").
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Generator
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from napari_fcnseg.core.progress import Progress
from napari_fcnseg.model.checkpoint import SegmentationModel, load_model, save_model
from napari_fcnseg.model.default import resolve_model_path
from napari_fcnseg.training.egg_recipe import (
    EGG_CLASS_NAMES,
    STRUCTURE_CLASS_NAMES,
    STRUCTURE_TIPS,
    pretrain_egg_chamber_model,
    real_egg_samples,
    recipe_optics,
    train_egg_chamber_model,
)
from napari_fcnseg.training.trainer import TrainResult

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "napari_fcnseg" / "models"
DEFAULT_OUT = MODELS / "egg_chambers.safetensors"
STRUCTURE_OUT = MODELS / "egg_structure.safetensors"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "drosophila_ovary"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, help=f"default {DEFAULT_OUT.relative_to(ROOT)}")
    parser.add_argument(
        "--structure",
        action="store_true",
        help="the four tissue structures instead of egg chambers (default out "
        f"{STRUCTURE_OUT.relative_to(ROOT)})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--stage1",
        type=Path,
        metavar="PATH",
        help="also write the synthetic-only stage there (bench_quality.py --part eggs reads "
        "benchmarks/_work/pretrained_seed0.safetensors)",
    )
    parser.add_argument(
        "--from-stage1",
        type=Path,
        metavar="PATH",
        help="skip the synthetic-only stage: load it from a file an earlier --stage1 run of the "
        "same recipe wrote (the stage is deterministic, so this saves its minutes)",
    )
    parser.add_argument(
        "--compare", metavar="MODEL", help="model file (or 'default') the new weights must equal"
    )
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if not args.data.is_dir():
        print(
            f"{args.data} not found: the default model is trained on the shared real slices too",
            file=sys.stderr,
        )
        return 2
    structure = bool(args.structure)
    out = args.out or (STRUCTURE_OUT if structure else DEFAULT_OUT)
    if out.exists() and not args.overwrite:
        # checked before the half hour of training, not after it
        print(f"{out} exists: give --overwrite to replace it, or --out", file=sys.stderr)
        return 2
    if args.from_stage1:
        first = load_model(args.from_stage1)
        wanted = len(STRUCTURE_CLASS_NAMES if structure else EGG_CLASS_NAMES)
        if first.info.num_classes != wanted:
            print(
                f"{args.from_stage1} has {first.info.num_classes} classes, this recipe {wanted}: "
                f"give a first stage of the same recipe{' (--structure)' if structure else ''}",
                file=sys.stderr,
            )
            return 2
    real = real_egg_samples(args.data, structure=structure)
    start = time.perf_counter()
    # The two stages one after the other (what train_egg_chamber_model(real) runs in one call),
    # so that the synthetic-only stage can be kept for benchmarks/bench_quality.py.
    if not args.from_stage1:
        first = _run(
            "synthetic only",
            pretrain_egg_chamber_model(seed=args.seed, device="cpu", structure=structure),
        ).model
    if args.stage1:
        save_model(first, args.stage1, overwrite=True)
    result = _run(
        "synthetic + real",
        train_egg_chamber_model(
            real, seed=args.seed, device="cpu", pretrained=first, structure=structure
        ),
    )
    model = result.model
    model.info.provenance.update(
        {
            "name": "egg structure" if structure else "egg chambers (default)",
            "data": "synthetic egg chambers (napari_fcnseg.training.synthetic, seeds 0 and 1000) + "
            "3 confocal slices of Drosophila ovaries (pyImSegm, BSD-3-Clause, (c) Jiri "
            "Borovec; Borovec, Kybic & Nava, MLMI 2017)",
            "recipe": "napari_fcnseg.training.egg_recipe",
            "synthetic_optics": [asdict(look) for look in recipe_optics(structure)],
            "synthetic_tips": bool(structure and STRUCTURE_TIPS),
            "script": "scripts/train_default_model.py",
            "first_stage": args.from_stage1.name if args.from_stage1 else "trained in this run",
            "seed": args.seed,
            "total_seconds": round(time.perf_counter() - start, 1),
            "licence": "BSD-3-Clause (weights); training data attribution as above",
        }
    )
    path = save_model(model, out, overwrite=args.overwrite)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), validation IoU on synthetic "
        f"slices {result.best_val_iou:.3f}, {time.perf_counter() - start:.0f} s"
    )
    return _compare(model, args.compare) if args.compare else 0


def _run(stage: str, job: Generator[Progress, None, TrainResult]) -> TrainResult:
    """Run one stage with a progress bar on stderr."""
    with tqdm(desc=stage, unit="step", file=sys.stderr) as bar:
        while True:
            try:
                event = next(job)
            except StopIteration as stop:
                return stop.value
            bar.total = event.total
            bar.n = event.step
            info = event.info
            bar.set_postfix(stage=info.get("phase"), loss=info.get("loss"), val=info.get("val_iou"))


def _compare(model: SegmentationModel, other: str) -> int:
    """Print how the new weights differ from ``other``'s; 0 when every tensor is equal."""
    theirs = load_model(resolve_model_path(other)).state_dict()
    ours = model.state_dict()
    if ours.keys() != theirs.keys():
        print(f"{other}: a different network (tensor names differ)")
        return 1
    differing = [k for k in ours if not torch.equal(ours[k], theirs[k])]
    if not differing:
        print(f"identical to {other}: all {len(ours)} tensors equal")
        return 0
    largest = max(float((ours[k].double() - theirs[k].double()).abs().max()) for k in differing)
    print(
        f"differs from {other}: {len(differing)} of {len(ours)} tensors, "
        f"largest difference {largest:.3g}"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
