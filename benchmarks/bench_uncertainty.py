"""Does the per-pixel uncertainty point at the model's errors on real slices it never saw?

For each shared real slice, a model that never saw it (by default the synthetic-only first
stage of the bundled recipe, ``benchmarks/_work/pretrained_seed0.safetensors``) predicts the
slice; each pixel is an error when its label differs from the annotation. Printed per slice,
next to a reference in the same run: the distance to the predicted outline (errors of a good
model sit on outlines, so "near an edge" is the obvious guess without any uncertainty):

* AUROC of the score for telling error pixels from correct ones (0.5 = chance);
* the share of all error pixels among the 5% of pixels the score ranks most unsure;
* the mean uncertainty of the slice beside its error rate (a slice-level ranking signal).

Usage: ``python benchmarks/bench_uncertainty.py [--model PATH] [--data DIR]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from _report import header

from napari_fcnseg.core.predict import predict_probabilities
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.core.uncertainty import entropy_uncertainty
from napari_fcnseg.model.checkpoint import load_model
from napari_fcnseg.training import egg_recipe

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "drosophila_ovary"
START = ROOT / "benchmarks" / "_work" / "pretrained_seed0.safetensors"
TOP = 0.05


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` pixels (NaN without both kinds)."""
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive.ravel(), score.ravel()))


def top_share(score: np.ndarray, positive: np.ndarray, fraction: float = TOP) -> float:
    """Share of the positives among the ``fraction`` of pixels with the highest score."""
    k = max(1, round(fraction * score.size))
    top = np.argpartition(score.ravel(), -k)[-k:]
    return float(positive.ravel()[top].sum() / max(1, positive.sum()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=START)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} (the shared real slices) is absent")
        return 0
    if not args.model.is_file():
        print(f"{args.model} is missing: scripts/train_default_model.py --stage1 {args.model}")
        return 2
    print(header())
    print(f"model {args.model.name}")
    model = load_model(args.model)
    print(
        "\n| slice | error pixels | AUROC: uncertainty | AUROC: near the outline | "
        f"errors in top {TOP:.0%}: uncertainty | near the outline | mean uncertainty |"
    )
    print("|---|---|---|---|---|---|---|")
    for sample in egg_recipe.real_egg_samples(args.data):
        probs = run_to_completion(predict_probabilities(model, sample.image, device="cpu"))
        predicted = probs.argmax(0) > 0
        wrong = predicted != (sample.labels > 0)
        unsure = entropy_uncertainty(probs)
        outline = predicted ^ ndi.binary_erosion(predicted)
        nearness = -ndi.distance_transform_edt(~outline)  # higher = closer to the outline
        print(
            f"| {sample.name} | {wrong.mean():.2%} | {auroc(unsure, wrong):.3f} | "
            f"{auroc(nearness, wrong):.3f} | {top_share(unsure, wrong):.1%} | "
            f"{top_share(nearness, wrong):.1%} | {unsure.mean():.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
