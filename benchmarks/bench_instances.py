"""Egg chambers as objects: how well does each way of splitting a mask match annotated chambers?

On the shared real slices, each annotated chamber of ``annot_eggs`` (a partial instance
annotation) is matched with its best-overlapping object. Printed per slice and mask source
(the annotation's own egg mask, which isolates the splitting, and the masks of a model that
never saw the slices), in the same run: the share of annotated chambers matched at IoU >= 0.5,
the mean best IoU, and the number of objects lying mostly inside annotated chambers (against
the number of those chambers), and how far the best object's outline lies outside the
chamber's on average (pixels), for connected components, a plain distance-transform watershed
(``peak_local_max``, ``min_distance`` 20), and ``napari_fcnseg.core.instances.split_instances``.
The model's masks are taken as they come and after Refine with CRF (default settings), which
is what Segment's objects are split from once the labels are refined. The mean best IoU over
every annotated chamber closes the output.

With ``--folds TAG`` it also scores each slice with the recipe's leave-one-out model that
``bench_quality.py --part eggs --tag TAG`` trained without it (what a user gets on a new
slice), with and without the CRF.

Usage: ``python benchmarks/bench_instances.py [--model PATH] [--folds TAG] [--data DIR]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import feature, measure, segmentation
from skimage import io as skio

sys.path.insert(0, str(Path(__file__).parent))
from _report import header

from napari_fcnseg.core.crf import refine_with_crf
from napari_fcnseg.core.instances import split_instances
from napari_fcnseg.core.predict import predict_probabilities, probabilities_to_labels
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.model.checkpoint import SegmentationModel, load_model
from napari_fcnseg.training import egg_recipe

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "drosophila_ovary"
WORK = ROOT / "benchmarks" / "_work"
START = WORK / "pretrained_seed0.safetensors"


def distance_watershed(mask: np.ndarray, min_distance: int = 20) -> np.ndarray:
    distance = ndi.distance_transform_edt(mask)
    peaks = feature.peak_local_max(
        distance, min_distance=min_distance, labels=measure.label(mask), exclude_border=False
    )
    markers = np.zeros(mask.shape, int)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-distance, markers, mask=mask)


METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "connected components": measure.label,
    "distance watershed": distance_watershed,
    "split_instances": split_instances,
}


def score(objects: np.ndarray, chambers: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per annotated chamber: best IoU and outline offset; objects mostly inside chambers; chambers.

    The offset is how far the best object's outline lies outside the chamber's, on average
    (pixels; negative: inside): (object pixels outside the chamber - chamber pixels outside
    the object) / the chamber's perimeter.
    """
    from skimage.measure import perimeter

    best, offsets = [], []
    for value in np.unique(chambers[chambers > 0]):
        chamber = chambers == value
        candidates = [
            ((chamber & (objects == i)).sum() / (chamber | (objects == i)).sum(), i)
            for i in np.unique(objects[chamber])
            if i
        ]
        iou, label = max(candidates, default=(0.0, 0))
        best.append(iou)
        matched = objects == label if label else np.zeros_like(chamber)
        outside = (matched & ~chamber).sum() - (chamber & ~matched).sum()
        offsets.append(outside / max(perimeter(chamber), 1.0))
    annotated = chambers > 0
    inside = [
        i
        for i in np.unique(objects[annotated])
        if i and (objects == i)[annotated].sum() > 0.5 * (objects == i).sum()
    ]
    return np.array(best), np.array(offsets), len(inside), len(best)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=START)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--folds",
        metavar="TAG",
        help="also the recipe's leave-one-out models bench_quality.py --tag TAG cached "
        "(benchmarks/_work/loo_<slice>_TAG.safetensors: each slice scored by the model trained "
        "on the two others, labels as Segment makes them)",
    )
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} (the shared real slices) is absent")
        return 0
    print(header())
    sources: list[tuple[str, Callable[[str], SegmentationModel] | None, bool]] = [
        ("annotated egg mask", None, False)
    ]
    if args.model.is_file():
        model = load_model(args.model)
        sources.append((f"model {args.model.name}", lambda _: model, False))
        sources.append((f"model {args.model.name} + CRF", lambda _: model, True))
    if args.folds:
        folds = {
            name: WORK / f"loo_{name}_{args.folds}.safetensors" for name in egg_recipe.REAL_NAMES
        }
        missing = [str(p) for p in folds.values() if not p.is_file()]
        if missing:
            print(f"--folds {args.folds}: run bench_quality.py --part eggs --tag {args.folds} "
                  f"first ({', '.join(missing)} absent)", file=sys.stderr)  # fmt: skip
            return 2

        def fold_model(name: str) -> SegmentationModel:
            return load_model(folds[name])

        sources.append((f"leave-one-out models {args.folds}", fold_model, False))
        sources.append((f"leave-one-out models {args.folds} + CRF", fold_model, True))
    print(
        "\n| mask | slice | method | matched at IoU >= 0.5 | mean best IoU | objects / chambers "
        "| outline offset (px) |"
    )
    print("|---|---|---|---|---|---|---|")
    every: dict[tuple[str, str], list[np.ndarray]] = {}
    for source, model_for, crf in sources:
        for sample in egg_recipe.real_egg_samples(args.data):
            chambers = np.asarray(skio.imread(args.data / "annot_eggs" / f"{sample.name}.png"))
            if model_for is None:
                mask = sample.labels > 0
            else:
                model = model_for(sample.name)
                probs = run_to_completion(predict_probabilities(model, sample.image, device="cpu"))
                if crf:
                    probs = refine_with_crf(sample.image, probs)
                # as Segment labels it: the model's threshold, and its holes filled if it says so
                mask = probabilities_to_labels(probs, fill_holes=model.info.fill_holes) > 0
            for name, method in METHODS.items():
                best, offsets, inside, total = score(method(mask), chambers)
                every.setdefault((source, name), []).append(best)
                print(
                    f"| {source} | {sample.name} | {name} | {(best >= 0.5).mean():.0%} | "
                    f"{best.mean():.3f} | {inside} / {total} | {offsets.mean():+.1f} |"
                )
    print("\nmean best IoU over every annotated chamber:")
    for (source, name), parts in every.items():
        chambers_best = np.concatenate(parts)
        print(f"  {source}, {name}: {chambers_best.mean():.3f} ({chambers_best.size} chambers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
