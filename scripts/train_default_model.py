"""Train the bundled default egg-chamber model and write its model card.

    python scripts/train_default_model.py [--data ../shared/data/drosophila_ovary] [--overwrite]

Runs the recipe in ``napari_fcnseg.training.egg_recipe`` (synthetic pretraining, then synthetic
plus the three real annotated slices) with fixed seeds and fixed step counts, on the CPU.
Writes ``src/napari_fcnseg/models/egg_chambers.safetensors``. A re-run with the current code
gives different weights from the shipped file (README, "The bundled model").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from napari_fcnseg.core.progress import Progress
from napari_fcnseg.model.checkpoint import save_model
from napari_fcnseg.training.egg_recipe import real_egg_samples, train_egg_chamber_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "napari_fcnseg" / "models" / "egg_chambers.safetensors"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "drosophila_ovary"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if not args.data.is_dir():
        print(
            f"{args.data} not found: the default model is trained on the shared real slices too",
            file=sys.stderr,
        )
        return 2
    real = real_egg_samples(args.data)
    start = time.perf_counter()
    job = train_egg_chamber_model(real, seed=args.seed, device="cpu")
    with tqdm(desc="training", unit="step", file=sys.stderr) as bar:
        while True:
            try:
                event = next(job)
            except StopIteration as stop:
                result = stop.value
                break
            if isinstance(event, Progress):
                bar.total = event.total
                bar.n = event.step
                iou = event.info.get("val_iou")
                bar.set_postfix(
                    stage=event.info.get("phase"), loss=event.info.get("loss"), val_iou=iou
                )
    model = result.model
    model.info.provenance.update(
        {
            "name": "egg chambers (default)",
            "data": "synthetic egg chambers (napari_fcnseg.training.synthetic, seeds 0 and 1000) + "
            "3 confocal slices of Drosophila ovaries (pyImSegm, BSD-3-Clause, (c) Jiri "
            "Borovec; Borovec, Kybic & Nava, MLMI 2017)",
            "recipe": "napari_fcnseg.training.egg_recipe",
            "script": "scripts/train_default_model.py",
            "seed": args.seed,
            "total_seconds": round(time.perf_counter() - start, 1),
            "licence": "BSD-3-Clause (weights); training data attribution as above",
        }
    )
    path = save_model(model, args.out, overwrite=args.overwrite)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), validation IoU on synthetic "
        f"slices {result.best_val_iou:.3f}, {time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
