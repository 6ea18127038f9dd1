"""Does the CRF improve a real segmentation? Binary egg IoU before and after refine_with_crf.

On the three shared Drosophila ovary slices (../shared/data/drosophila_ovary), probabilities
come from a *probability source*: by default a random forest on scikit-image's
``multiscale_basic_features``, trained leave-one-out on the other two slices (realistic,
imperfect probabilities). Later a U-Net will provide them: add a function with the signature of
``random_forest_source`` to SOURCES and pass ``--source NAME``.

Besides the default CRF, variants of the unary handling are measured (probability temperature
and clipping), to see whether over-confident unaries keep the CRF from helping.

Run: .venv/bin/python benchmarks/bench_crf_quality.py [--source random_forest|unet] [--grid]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skimage import feature, io

from napari_fcnseg.core.crf import refine_with_crf

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "drosophila_ovary"
WORK = Path(__file__).resolve().parent / "_work"
NAMES = ("insitu4174", "insitu7331", "insitu7544")

#: (image, held-out name, training images and labels) -> (2, H, W) probabilities [bg, egg]
ProbabilitySource = Callable[[np.ndarray, str, list[tuple[np.ndarray, np.ndarray]]], np.ndarray]


def _features(image: np.ndarray) -> np.ndarray:
    return feature.multiscale_basic_features(image, channel_axis=-1, sigma_min=1, sigma_max=16)


def random_forest_source(
    image: np.ndarray, name: str, training: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Random forest on multiscale features of the other slices (8000 pixels per class each)."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    xs, ys = [], []
    for img, lab in training:
        f = _features(img)
        f = f.reshape(-1, f.shape[-1])
        y = (lab > 0).reshape(-1)
        for cls in (0, 1):
            idx = np.flatnonzero(y == cls)
            pick = rng.choice(idx, size=min(8000, idx.size), replace=False)
            xs.append(f[pick])
            ys.append(y[pick])
    forest = RandomForestClassifier(n_estimators=60, max_depth=14, n_jobs=2, random_state=0)
    forest.fit(np.concatenate(xs), np.concatenate(ys))
    f = _features(image)
    p = forest.predict_proba(f.reshape(-1, f.shape[-1]))[:, 1].reshape(image.shape[:2])
    return np.stack([1 - p, p]).astype(np.float32)


def unet_source(
    image: np.ndarray, name: str, training: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """The leave-one-out U-Net of ``bench_quality.py --part eggs`` (cached in benchmarks/_work).

    Run ``python benchmarks/bench_quality.py --part eggs`` first: it trains (the recipe of the
    bundled model, without the slice) and caches one model per held-out slice.
    """
    from napari_fcnseg.core.predict import predict_probabilities
    from napari_fcnseg.core.progress import run_to_completion
    from napari_fcnseg.model.checkpoint import load_model

    path = WORK / f"loo_{name}_seed0.safetensors"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run benchmarks/bench_quality.py --part eggs first")
    model = load_model(path)
    return run_to_completion(predict_probabilities(model, image, device="cpu"))


SOURCES: dict[str, ProbabilitySource] = {
    "random_forest": random_forest_source,
    "unet": unet_source,
}


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float((pred & truth).sum() / max(1, (pred | truth).sum()))


def tempered(probs: np.ndarray, temperature: float, floor: float) -> np.ndarray:
    p = np.clip(probs, floor, 1.0) ** (1.0 / temperature)
    return (p / p.sum(0)).astype(np.float32)


VARIANTS: dict[str, dict] = {
    "CRF defaults": {},
    "CRF, probabilities clipped to [0.05, 1]": {"floor": 0.05},
    "CRF, temperature 2": {"temperature": 2.0},
    "CRF, 10 iterations": {"iterations": 10},
    "CRF, bilateral_compat 5": {"bilateral_compat": 5.0},
}


def _grid() -> list[dict]:
    return [
        {"bilateral_sxy": x, "bilateral_compat": c, "bilateral_srgb": r}
        for x in (20.0, 40.0, 80.0)
        for c in (5.0, 10.0)
        for r in (5.0, 8.0, 13.0)
    ]


def _refined_iou(image: np.ndarray, probs: np.ndarray, truth: np.ndarray, options: dict) -> float:
    opts = dict(options)
    p = tempered(probs, opts.pop("temperature", 1.0), opts.pop("floor", 1e-5))
    refined = refine_with_crf(image, p, device="cpu", **opts)
    return iou(refined[1] > refined[0], truth)


def grid_search(images: dict, labels: dict, probabilities: dict) -> None:
    """Every grid setting on every slice, then a leave-one-slice-out choice of setting.

    For each slice, the setting with the best mean IoU gain on the *other* slices is applied to
    it: an honest estimate of what choosing CRF parameters on annotated slices gives on a new one.
    """
    grid = _grid()
    before = {n: iou(probabilities[n][1] > 0.5, labels[n] > 0) for n in NAMES}
    gains = np.array(
        [
            [_refined_iou(images[n], probabilities[n], labels[n] > 0, g) - before[n] for n in NAMES]
            for g in grid
        ]
    )
    print("\nIoU gain of the CRF per setting (after - before)\n")
    header = "| bilateral_sxy | bilateral_compat | bilateral_srgb | "
    print(header + " | ".join(NAMES) + " | mean |")
    print("|---|---|---|" + "---|" * (len(NAMES) + 1))
    for g, row in zip(grid, gains):
        cells = " | ".join(f"{v:+.4f}" for v in row)
        print(
            f"| {g['bilateral_sxy']:g} | {g['bilateral_compat']:g} | {g['bilateral_srgb']:g} | "
            f"{cells} | {row.mean():+.4f} |"
        )
    print("\nLeave-one-slice-out choice (setting chosen on the other slices, scored on this one)\n")
    print("| slice | chosen setting | IoU before | IoU after | gain |")
    print("|---|---|---|---|---|")
    for k, name in enumerate(NAMES):
        others = [j for j in range(len(NAMES)) if j != k]
        best = int(np.argmax(gains[:, others].mean(axis=1)))
        g = grid[best]
        print(
            f"| {name} | sxy={g['bilateral_sxy']:g}, compat={g['bilateral_compat']:g}, "
            f"srgb={g['bilateral_srgb']:g} | {before[name]:.3f} | "
            f"{before[name] + gains[best, k]:.3f} | {gains[best, k]:+.4f} |"
        )
    best = int(np.argmax(gains.mean(axis=1)))
    print(f"\nbest on all slices: {grid[best]} (mean gain {gains[best].mean():+.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="random_forest", choices=sorted(SOURCES))
    parser.add_argument(
        "--grid", action="store_true", help="also search bilateral sxy/compat/srgb (slower)"
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"shared data not found at {DATA}; nothing to measure")
    images = {n: io.imread(DATA / "image" / f"{n}.jpg") for n in NAMES}
    labels = {n: io.imread(DATA / "annot_struct" / f"{n}.png") for n in NAMES}
    source = SOURCES[args.source]
    results: dict[str, list[float]] = {"unaries (argmax)": []}
    probabilities = {}
    for name in NAMES:
        training = [(images[o], labels[o]) for o in NAMES if o != name]
        probs = probabilities[name] = source(images[name], name, training)
        truth = labels[name] > 0
        results["unaries (argmax)"].append(iou(probs[1] > 0.5, truth))
        for variant, options in VARIANTS.items():
            opts = dict(options)
            p = tempered(probs, opts.pop("temperature", 1.0), opts.pop("floor", 1e-5))
            refined = refine_with_crf(images[name], p, device="cpu", **opts)
            results.setdefault(variant, []).append(iou(refined[1] > refined[0], truth))
    print(f"Binary egg IoU (label > 0), probabilities from {args.source} (leave-one-out)\n")
    print("| probabilities | " + " | ".join(NAMES) + " | mean |")
    print("|---|" + "---|" * (len(NAMES) + 1))
    for variant, values in results.items():
        cells = " | ".join(f"{v:.3f}" for v in values)
        print(f"| {variant} | {cells} | {np.mean(values):.3f} |")
    if args.grid:
        grid_search(images, labels, probabilities)


if __name__ == "__main__":
    main()
