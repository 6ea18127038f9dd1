"""How the egg chambers' edges look, real against synthetic, and where models err at them.

Part 1: the mean intensity (maximum channel, scaled per image between its 1st and 99.8th
percentiles) against the signed distance to the annotated edge, on the three shared real slices
and on synthetic slices from the recipe's generator (``napari_fcnseg.training.synthetic``, the
recipe's seed), in the same run. Distance 0 is the last pixel inside a chamber, 1 the first
outside. A generator whose edges fall off faster than the real ones teaches a network that
every faint pixel beside a chamber is still chamber.

Part 2 (``--model PATH``, repeatable): for each model, on each real slice and on the recipe's
synthetic validation slices (seed 1000, whose labels are exact: an offset there is the
network's own bias), its mask as Segment shows it (``model_labels``), the IoU and its errors
by distance to the annotated edge: false
egg pixels within 3 px of a chamber, 3-10 px, farther; missed egg pixels within 3 px of the
edge, deeper; and the mean outward offset of the outline, (false pixels within 10 px - missed
pixels within 3 px) / the annotated outline's length.

    python benchmarks/bench_edges.py [--data DIR] [--model PATH ...] [--synthetic N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _report import header
from scipy import ndimage as ndi

from napari_fcnseg.core.predict import model_labels, predict_probabilities
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.model.checkpoint import load_model
from napari_fcnseg.training import egg_recipe
from napari_fcnseg.training.samples import TrainingSample

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "drosophila_ovary"
#: Signed distances to the edge in the profile table (negative: inside a chamber).
DISTANCES = np.arange(-6, 9)


def signed_distance(foreground: np.ndarray) -> np.ndarray:
    """Distance to the edge of ``foreground``: 0 on its last pixels, 1 on the first outside."""
    inside = ndi.distance_transform_edt(foreground)
    outside = ndi.distance_transform_edt(~foreground)
    return np.where(foreground, 1 - inside, outside)


def edge_profile(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean scaled intensity at each of :data:`DISTANCES` from the edge of ``labels > 0``."""
    pixels = image.astype(np.float32)
    brightest = pixels.max(axis=-1) if pixels.ndim == 3 else pixels
    low, high = np.percentile(brightest, [1, 99.8])
    scaled = np.clip((brightest - low) / max(high - low, 1e-6), 0, 1)
    distance = signed_distance(labels > 0)
    return np.array([scaled[distance == d].mean() for d in DISTANCES])


def outline_errors(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU and the error pixels of ``prediction`` by their distance to the edge of ``truth``."""
    outside = ndi.distance_transform_edt(~truth)
    inside = ndi.distance_transform_edt(truth)
    false, missed = prediction & ~truth, truth & ~prediction
    outline = int((truth & ~ndi.binary_erosion(truth)).sum())
    near = int((false & (outside <= 3)).sum())
    middle = int((false & (outside > 3) & (outside <= 10)).sum())
    shallow = int((missed & (inside <= 3)).sum())
    return {
        "iou": float((prediction & truth).sum() / max((prediction | truth).sum(), 1)),
        "false_near": near,
        "false_middle": middle,
        "false_far": int((false & (outside > 10)).sum()),
        "missed_near": shallow,
        "missed_deep": int((missed & (inside > 3)).sum()),
        "offset": (near + middle - shallow) / max(outline, 1),
    }


def _profiles(real: list[TrainingSample], synthetic: int) -> None:
    print("\nMean scaled intensity against the distance to the annotated edge (px; <= 0 inside)")
    print("| slices | " + " | ".join(f"{d:+d}" for d in DISTANCES) + " |")
    print("|---|" + "---|" * len(DISTANCES))
    for sample in real:
        cells = " | ".join(f"{v:.2f}" for v in edge_profile(sample.image, sample.labels))
        print(f"| {sample.name} | {cells} |")
    drawn = egg_recipe.synthetic_egg_samples(synthetic, seed=0)
    mean = np.mean([edge_profile(s.image, s.labels) for s in drawn], axis=0)
    print(f"| synthetic (mean of {synthetic}) | " + " | ".join(f"{v:.2f}" for v in mean) + " |")


def _errors(samples: list[TrainingSample], models: list[Path]) -> None:
    print(
        "\nErrors at the edge (pixels): false egg within 3 px / 3-10 px / farther, missed "
        "within 3 px / deeper; offset = mean outward shift of the outline (px)"
    )
    print("| model | slice | IoU | false <=3 | false 3-10 | false >10 | missed <=3 | missed >3 | "
          "offset |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for path in models:
        model = load_model(path)
        for sample in samples:
            probs = run_to_completion(predict_probabilities(model, sample.image, device="cpu"))
            e = outline_errors(model_labels(model.info, probs) > 0, sample.labels > 0)
            print(
                f"| {path.stem} | {sample.name} | {e['iou']:.3f} | {e['false_near']} | "
                f"{e['false_middle']} | {e['false_far']} | {e['missed_near']} | "
                f"{e['missed_deep']} | {e['offset']:+.2f} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--synthetic", type=int, default=6, help="synthetic slices to profile")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"{args.data} not found: this benchmark needs the real slices", file=sys.stderr)
        return 2
    print(header())
    real = egg_recipe.real_egg_samples(args.data)
    _profiles(real, args.synthetic)
    if args.model:
        val = egg_recipe.synthetic_egg_samples(egg_recipe.SYNTHETIC_VAL, seed=1000)
        _errors([*real, *val], args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
