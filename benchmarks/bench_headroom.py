"""Where the egg-chamber IoU is lost on the real slices, and how much any fine-tune could win.

For each shared real slice: what a uniform shift of the annotation's own outline by 1-3 px
costs in IoU (the scale of the loop's targets), then for each model: its IoU, how far its
outline lies outside the annotation's on average (px), its wrong pixels within ``NEAR`` px of
the annotated outline and farther away (whole missed or added regions), and the IoU it would
reach with either kind mended. A model named ``loo_<slice>_<tag>`` (the recipe's leave-one-out
folds, ``bench_quality.py --part eggs``) is scored only on the slice it did not see.

``--adabn MIX`` adds a probe: the BatchNorm statistics re-estimated on the slice being
segmented (AdaBN), mixed ``MIX`` : ``1 - MIX`` with the model's own.

    python benchmarks/bench_headroom.py [MODEL.safetensors ...] [--adabn 0.3]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
import _report as report
from bench_loop import DATA, WORK, predict_mask

from napari_fcnseg.model.checkpoint import SegmentationModel, load_model
from napari_fcnseg.training import egg_recipe
from napari_fcnseg.training._batchnorm import recalibrate_batchnorm
from napari_fcnseg.training.samples import TrainingSample, prepare_sample

#: Wrong pixels at most this far (px) from the annotated outline count as outline errors.
NEAR = 3
#: The loop's start and the recipe's leave-one-out folds, as the other benchmarks cache them.
DEFAULT_MODELS = ("pretrained_mconf", *(f"loo_{n}_mconf" for n in egg_recipe.REAL_NAMES))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def outline_shifts(truth: np.ndarray) -> str:
    cells = []
    for k in (1, 2, 3):
        inner = iou(truth, ndi.binary_erosion(truth, iterations=k))
        outer = iou(truth, ndi.binary_dilation(truth, iterations=k))
        cells.append(f"{k} px: {inner:.3f} / {outer:.3f}")
    return ", ".join(cells)


def error_split(predicted: np.ndarray, truth: np.ndarray) -> str:
    """IoU, outline offset, near/far wrong pixels and the IoU with each kind mended."""
    # outside the annotation: at most NEAR px from it; inside: at most NEAR px from its edge
    near = np.where(truth, ndi.distance_transform_edt(truth), ndi.distance_transform_edt(~truth))
    near = near <= NEAR
    wrong = predicted != truth
    perimeter = (ndi.binary_dilation(truth) & ~truth).sum()
    offset = ((predicted & ~truth).sum() - (truth & ~predicted).sum()) / perimeter
    mended_near = np.where(wrong & near, truth, predicted)
    mended_far = np.where(wrong & ~near, truth, predicted)
    return (
        f"{iou(predicted, truth):.3f} | {offset:+.1f} | {(wrong & near).sum()} | "
        f"{(wrong & ~near).sum()} | {iou(mended_near, truth):.3f} | {iou(mended_far, truth):.3f}"
    )


def adabn(model: SegmentationModel, sample: TrainingSample, mix: float) -> SegmentationModel:
    """``model`` with BatchNorm statistics drawn ``mix`` from ``sample`` itself."""
    adapted = copy.deepcopy(model)
    layers = [m for m in adapted.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    old = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
    target = prepare_sample(sample, model.info.in_channels, model.info.normalization)
    recalibrate_batchnorm(
        adapted.unet,
        [target],
        crop=256,
        batch_size=8,
        device=torch.device("cpu"),
        seed=0,
        crops=32,
    )
    for layer, (mean, var) in zip(layers, old):
        layer.running_mean.mul_(mix).add_((1 - mix) * mean)
        layer.running_var.mul_(mix).add_((1 - mix) * var)
    return adapted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--adabn", type=float, metavar="MIX")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} (the shared real slices) is absent")
        return 0
    paths = args.models or [WORK / f"{name}.safetensors" for name in DEFAULT_MODELS]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        print(
            f"missing: {', '.join(map(str, missing))}: write the start with "
            "scripts/train_default_model.py --stage1 and the folds with bench_quality.py --part "
            "eggs --tag mconf, or name other model files"
        )
        return 2
    torch.set_grad_enabled(False)
    print(report.header())
    slices = egg_recipe.real_egg_samples(args.data)
    print("\nIoU of the annotation against itself shrunk / grown by 1-3 px:")
    for s in slices:
        print(f"* {s.name}: {outline_shifts(s.labels > 0)}")
    extra = " | AdaBN IoU" if args.adabn is not None else ""
    print(
        f"\n| model | slice | IoU | outline offset (px) | wrong px within {NEAR} px of the outline "
        f"| wrong px farther | IoU, outline mended | IoU, far regions mended{extra} |"
    )
    print("|---|---|---|---|---|---|---|---|" + ("---|" if extra else ""))
    for path in paths:
        model = load_model(path)
        for s in slices:
            if path.stem.startswith("loo_") and s.name not in path.stem:
                continue
            truth = s.labels > 0
            cells = error_split(predict_mask(model, s.image), truth)
            if args.adabn is not None:
                cells += f" | {iou(predict_mask(adabn(model, s, args.adabn), s.image), truth):.3f}"
            print(f"| {path.stem} | {s.name} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
