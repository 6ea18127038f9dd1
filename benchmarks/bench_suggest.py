"""What to annotate next: does ranking slices by a score pick the slices a correction helps most?

The start is a model that never saw the slices it ranks (the synthetic-only first stage of the
bundled recipe, as in ``bench_loop.py``). Two parts:

(a) **Real slices** (``../shared/data/drosophila_ovary``; skipped when absent). Every measure of
    :func:`napari_fcnseg.core.suggest.rank_for_annotation` on each slice and on each
    ``--region`` px square, beside the true error of the start model there (1 - IoU, with the
    same floor on the union as the scores); the Spearman rank correlation between score and
    error (slices, and squares pooled over the slices); which slice each measure picks first.
    The loop's gain from each first pick is taken from ``benchmarks/README.md`` ("The
    correction loop", :data:`LOOP_ROUND1`): suggested against the expectation of a random first
    pick (the mean over the three) and the worst-first oracle.
(b) **A synthetic stack** whose slices vary in difficulty (the project's egg-chamber generator;
    some slices blurred, dimmed, noisy or with a shifted stain). Spearman of each measure
    against the true error; then the loop: for each strategy (each measure, random with 3
    seeds, the worst-first oracle), correct the top slice with its true labels, fine-tune with
    the core policy (``--budget`` s), re-rank with the new model, correct the next, fine-tune
    again; IoU on the stack's remaining slices and on a fixed test set after each round.

    python benchmarks/bench_suggest.py [--start benchmarks/_work/pretrained_seed0.safetensors]
        [--parts real,synthetic] [--budget 20] [--loop-budget 60] [--regions 128,192,256]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
import _report as report
from bench_loop import DATA, WORK, iou, predict_mask

from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.core.suggest import DEFAULT_MEASURE, MEASURES, MIN_AREA, rank_for_annotation
from napari_fcnseg.model.checkpoint import SegmentationModel, load_model
from napari_fcnseg.training import egg_recipe
from napari_fcnseg.training.finetune import FineTuneSettings, fine_tune
from napari_fcnseg.training.samples import TrainingSample
from napari_fcnseg.training.synthetic import make_egg_chamber_slice

#: Round 1 of the loop with full corrections, from benchmarks/README.md ("The correction loop"):
#: the mean IoU of the two other slices after correcting each slice first, in the four
#: measurements there (run 1, run 2, the defaults table's row of the default, and the re-run
#: after the one-loop trainer), and the zero-shot IoU of each slice.
LOOP_ROUND1 = {
    "insitu4174": (0.957, 0.954, 0.952, 0.952),
    "insitu7331": (0.916, 0.909, 0.909, 0.919),
    "insitu7544": (0.914, 0.924, 0.926, 0.916),
}
LOOP_ZERO_SHOT = {"insitu4174": 0.893, "insitu7331": 0.949, "insitu7544": 0.924}
#: How the synthetic stack's slices are degraded (None: as drawn).
DEGRADATIONS = (None, "blur", None, "dim", "noise", None, "stain", "blur+noise", None, "dim+noise")
TEST_DEGRADATIONS = (None, "blur", "dim", "noise", "stain", None)
SYNTHETIC_SHAPE = (384, 512)
RANDOM_SEEDS = (0, 1, 2)
#: Seeds of the synthetic stacks scored (the loop runs on the first) and of the test set.
STACK_SEEDS = (7, 17, 27)
TEST_SEED = 8


# ------------------------------------------------------------------------------ shared
def error(predicted: np.ndarray, truth: np.ndarray, box: Sequence[int] | None = None) -> float:
    """1 - IoU of the foregrounds (in ``box``), the union floored as the scores' denominators."""
    if box is not None:
        y0, x0, y1, x1 = box
        predicted, truth = predicted[y0:y1, x0:x1], truth[y0:y1, x0:x1]
    wrong = np.count_nonzero(predicted != truth)
    union = np.count_nonzero(predicted | truth)
    return float(wrong / max(union, MIN_AREA * predicted.size, 1.0))


def rank(model: SegmentationModel, images: list[np.ndarray], names: list[str], **kw: Any) -> list:
    job = rank_for_annotation(
        model, images, names=names, measure=MEASURES[0], also=MEASURES, device="cpu", **kw
    )
    return run_to_completion(job)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


# ------------------------------------------------------------------------------ (a) real
def real_part(
    model: SegmentationModel, data: Path, regions: Sequence[int], loop_budget: float
) -> None:
    slices = egg_recipe.real_egg_samples(data)
    names = [s.name for s in slices]
    images = [s.image for s in slices]
    by_name = {r.source: r for r in rank(model, images, names)}
    masks = {s.name: predict_mask(model, s.image) for s in slices}
    truth = {s.name: s.labels > 0 for s in slices}
    errors = {n: error(masks[n], truth[n]) for n in names}
    print("\n### (a) Real slices: scores and true error of the start\n")
    print("| slice | true error (1 - IoU) | " + " | ".join(MEASURES) + " |")
    print("|---|---|" + "---|" * len(MEASURES))
    for n in names:
        cells = " | ".join(f"{by_name[n].scores[m]:.4f}" for m in MEASURES)
        print(f"| {n} | {errors[n]:.3f} | {cells} |")
    rhos = {m: [spearman([by_name[n].scores[m] for n in names], [errors[n] for n in names])]
            for m in MEASURES}  # fmt: skip
    counts = []
    for side in regions:  # squares holding objects (empty ones agree trivially: left out)
        squares = []
        for r in rank(model, images, names, region=side):
            for square in r.regions:
                y0, x0, y1, x1 = square.bbox
                pred, true = masks[r.source][y0:y1, x0:x1], truth[r.source][y0:y1, x0:x1]
                if np.count_nonzero(pred | true) > MIN_AREA * pred.size:
                    squares.append((error(pred, true), square.scores))
        counts.append(len(squares))
        for m in MEASURES:
            rhos[m].append(spearman([q[1][m] for q in squares], [q[0] for q in squares]))
    seconds_of = time_measures(model, images, names)
    oracle = max(names, key=errors.__getitem__)
    sizes = " | ".join(f"{side} px squares ({n})" for side, n in zip(regions, counts))
    print(f"\nSpearman rank correlation of score and true error (squares: those holding "
          f"objects, their number in brackets):\n\n| measure | 3 slices | {sizes} | mean | "
          "picks first | that pick's true error rank | seconds for the 3 slices |")  # fmt: skip
    print("|---|---|" + "---|" * len(regions) + "---|---|---|---|")
    worst_first = sorted(names, key=errors.__getitem__, reverse=True)
    picks = {m: max(names, key=lambda n: by_name[n].scores[m]) for m in MEASURES}
    for m in MEASURES:
        cells = " | ".join(f"{r:+.2f}" for r in rhos[m])
        print(f"| {m} | {cells} | {np.nanmean(rhos[m]):+.2f} | {picks[m]} | "
              f"{worst_first.index(picks[m]) + 1} of 3 | {seconds_of[m]:.1f} |")  # fmt: skip
    best = max(MEASURES, key=lambda m: np.nanmean(rhos[m]))
    print(f"(highest mean: {best}; the default is {DEFAULT_MEASURE})")
    loop_table(picks, errors)
    if loop_budget:
        fresh_loop(model, slices, picks, oracle, loop_budget)


def time_measures(model: SegmentationModel, images: list, names: list[str]) -> dict[str, float]:
    """Seconds to rank ``images`` by each measure alone (prediction included)."""
    out = {}
    for m in MEASURES:
        t0 = time.perf_counter()
        run_to_completion(rank_for_annotation(model, images, names=names, measure=m, device="cpu"))
        out[m] = time.perf_counter() - t0
    return out


def fresh_loop(
    model: SegmentationModel,
    slices: list[TrainingSample],
    picks: dict[str, str],
    oracle: str,
    budget: float,
) -> None:
    """Round 1 from each first slice with this run's start model: the loop's gain, measured."""
    settings = FineTuneSettings(max_seconds=budget, device="cpu")
    zero = {s.name: iou(model, s) for s in slices}
    after: dict[str, float] = {}
    print(f"\nRound 1 of the loop measured here ({budget:.0f} s, full corrections, the core "
          "policy), from this run's start model:\n")  # fmt: skip
    print("| first slice corrected | IoU of the other two: zero-shot -> after round 1 "
          "| the three slices, the corrected one counted right | chosen by |")  # fmt: skip
    print("|---|---|---|---|")
    for first in slices:
        others = [s for s in slices if s.name != first.name]
        outcome = run_to_completion(fine_tune(model, [first], settings))
        after[first.name] = float(np.mean([iou(outcome.model, s) for s in others]))
        before = float(np.mean([zero[s.name] for s in others]))
        by = [m for m, p in picks.items() if p == first.name]
        by += ["oracle"] if first.name == oracle else []
        three = (1 + 2 * after[first.name]) / 3
        print(f"| {first.name} | {before:.3f} -> {after[first.name]:.3f} | {three:.3f} | "
              f"{', '.join(by) or '-'} |", flush=True)  # fmt: skip
    expect = float(np.mean(list(after.values())))
    print(f"| random first slice (exact expectation) | -> {expect:.3f} | "
          f"{(1 + 2 * expect) / 3:.3f} | |")  # fmt: skip


def loop_table(picks: dict[str, str], errors: dict[str, float]) -> None:
    """Round 1's effect of each first pick, from the measured figures in benchmarks/README.md.

    Those were measured from the README's start model (trained with 2 threads); this run's
    (the same recipe, maybe another thread count) may rank the slices differently, so the
    worst-first pick of the README's model is its own zero-shot worst slice.
    """
    mean = {n: float(np.mean(v)) for n, v in LOOP_ROUND1.items()}
    others = {n: [o for o in LOOP_ROUND1 if o != n] for n in LOOP_ROUND1}
    before = {n: float(np.mean([LOOP_ZERO_SHOT[o] for o in others[n]])) for n in LOOP_ROUND1}
    # What the person has after the round: the corrected slice right, the others as predicted.
    three = {n: (1.0 + 2 * mean[n]) / 3 for n in LOOP_ROUND1}
    oracle = min(LOOP_ZERO_SHOT, key=LOOP_ZERO_SHOT.__getitem__)
    print(
        "\nRound 1 of the loop (full corrections) by first slice, from benchmarks/README.md "
        "('The correction loop', 4 measurements each, the README's start model):\n"
    )
    print("| first slice corrected | zero-shot IoU there | IoU of the other two: zero-shot -> "
          "after round 1 (range) | the three slices, the corrected one counted right "
          "| picked by this run's measures |")  # fmt: skip
    print("|---|---|---|---|---|")
    for n in LOOP_ROUND1:
        lo, hi = min(LOOP_ROUND1[n]), max(LOOP_ROUND1[n])
        by = [m for m, p in picks.items() if p == n]
        tag = " (worst-first oracle there)" if n == oracle else ""
        print(f"| {n}{tag} | {LOOP_ZERO_SHOT[n]:.3f} | {before[n]:.3f} -> {mean[n]:.3f} "
              f"({lo:.3f}-{hi:.3f}) | {three[n]:.3f} | {', '.join(by) or '-'} |")  # fmt: skip
    expect = float(np.mean(list(mean.values())))
    print(f"| random first slice (exact expectation) | | {np.mean(list(before.values())):.3f} "
          f"-> {expect:.3f} | {np.mean(list(three.values())):.3f} | |")  # fmt: skip
    print("(this run's start model: zero-shot IoU "
          + ", ".join(f"{n} {1 - e:.3f}" for n, e in errors.items()) + ")")  # fmt: skip


# ------------------------------------------------------------------------------ (b) synthetic
def degrade(image: np.ndarray, how: str | None, rng: np.random.Generator) -> np.ndarray:
    """Make a synthetic RGB slice harder: blur, dim (low contrast), noise, a stain shift."""
    out = image.astype(np.float32)
    for step in (how or "").split("+"):
        if step == "blur":
            out = ndi.gaussian_filter(out, (3.0, 3.0, 0))
        elif step == "dim":
            out = out.mean() + 0.3 * (out - out.mean())
        elif step == "noise":
            out = out + rng.normal(0, 30, out.shape)
        elif step == "stain":  # red/magenta stain -> green/cyan
            out = out[..., [1, 0, 2]] * np.array([1.0, 1.0, 0.4])
    return np.clip(out, 0, 255).astype(np.uint8)


def synthetic_slices(
    seed: int, degradations: Sequence[str | None], prefix: str
) -> list[TrainingSample]:
    rng = np.random.default_rng(seed)
    out = []
    for i, how in enumerate(degradations):
        image, labels = make_egg_chamber_slice(SYNTHETIC_SHAPE, rng=rng)
        name = f"{prefix}{i}" + (f" ({how})" if how else "")
        truth = (labels > 0).astype(np.uint8)
        out.append(TrainingSample(degrade(image, how, rng), truth, name=name))
    return out


def stack_ranks(model: SegmentationModel, stack: list[TrainingSample], skip: set[int]) -> list:
    images = np.stack([s.image for s in stack])
    job = rank_for_annotation(
        model, images, measure=MEASURES[0], also=MEASURES, exclude=skip, device="cpu"
    )
    return run_to_completion(job)


def true_errors(model: SegmentationModel, stack: list[TrainingSample]) -> list[float]:
    return [error(predict_mask(model, s.image), s.labels > 0) for s in stack]


def mean_iou(model: SegmentationModel, samples: Sequence[TrainingSample]) -> float:
    return float(np.mean([iou(model, s) for s in samples]))


def synthetic_part(model: SegmentationModel, budget: float) -> None:
    test = synthetic_slices(TEST_SEED, TEST_DEGRADATIONS, "t")
    rhos: dict[str, list[float]] = {m: [] for m in MEASURES}
    for seed in STACK_SEEDS:
        stack = synthetic_slices(seed, DEGRADATIONS, "z")
        errors = true_errors(model, stack)
        by_z = {r.z: r for r in stack_ranks(model, stack, set())}
        for m in MEASURES:
            rhos[m].append(spearman([by_z[z].scores[m] for z in range(len(stack))], errors))
        worst = int(np.argmax(errors))
        share = float(predict_mask(model, stack[worst].image).mean())
        print(f"stack seed {seed}: the worst slice is {stack[worst].name}, true error "
              f"{errors[worst]:.3f}, {share:.0%} predicted as objects, scores "
              + ", ".join(f"{m} {v:.3f}" for m, v in by_z[worst].scores.items())
              + "; top of each measure: "
              + ", ".join(f"{m} {stack[int(max(by_z.values(), key=lambda r: r.scores[m]).z)].name}"
                          for m in MEASURES))  # fmt: skip
        if seed != STACK_SEEDS[0]:
            continue
        loop_stack = stack
        size = f"{SYNTHETIC_SHAPE[0]}x{SYNTHETIC_SHAPE[1]} px"
        print(f"\n### (b) Synthetic stack of {len(stack)} slices ({size}, seed {seed}): "
              "scores and true error of the start\n")  # fmt: skip
        print("| slice | true error | " + " | ".join(MEASURES) + " |")
        print("|---|---|" + "---|" * len(MEASURES))
        for z, s in enumerate(stack):
            cells = " | ".join(f"{by_z[z].scores[m]:.4f}" for m in MEASURES)
            print(f"| {s.name} | {errors[z]:.3f} | {cells} |")
    seeds = " / ".join(str(s) for s in STACK_SEEDS)
    print(f"\n| measure | Spearman with the true error, stack seeds {seeds} | mean |")
    print("|---|---|---|")
    for m in MEASURES:
        cells = " / ".join(f"{r:+.2f}" for r in rhos[m])
        print(f"| {m} | {cells} | {np.nanmean(rhos[m]):+.2f} |")
    if budget > 0:
        synthetic_loop(model, loop_stack, test, budget)


def synthetic_loop(
    model: SegmentationModel,
    stack: list[TrainingSample],
    test: list[TrainingSample],
    budget: float,
) -> None:
    settings = FineTuneSettings(max_seconds=budget, device="cpu")
    start_remaining = mean_iou(model, stack)
    start_test = mean_iou(model, test)
    print(f"\nThe loop, {budget:.0f} s per round (start: {start_remaining:.3f} on the stack, "
          f"{start_test:.3f} on the test set of {len(test)}):\n")  # fmt: skip
    print("| strategy | round 1: corrected | IoU: remaining slices | test set | round 2: "
          "corrected | IoU: remaining slices | test set |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    cache: dict[tuple[int, ...], SegmentationModel] = {}
    strategies = [*(f"suggested: {m}" for m in MEASURES), *(f"random, seed {s}" for s in
                  RANDOM_SEEDS), "worst-first oracle"]  # fmt: skip
    results: dict[str, list[tuple[float, float]]] = {}
    for strategy in strategies:
        current, corrected, cells = model, [], []
        results[strategy] = []
        for _round in (1, 2):
            z = pick(strategy, current, stack, set(corrected), len(corrected))
            corrected.append(z)
            key = tuple(corrected)
            if key not in cache:
                samples = [stack[i] for i in corrected]
                cache[key] = run_to_completion(fine_tune(current, samples, settings)).model
            current = cache[key]
            remaining = [s for i, s in enumerate(stack) if i not in corrected]
            scores = (mean_iou(current, remaining), mean_iou(current, test))
            results[strategy].append(scores)
            cells.append(f"{stack[z].name} | {scores[0]:.3f} | {scores[1]:.3f}")
        print(f"| {strategy} | " + " | ".join(cells) + " |", flush=True)
    randoms = [results[f"random, seed {s}"] for s in RANDOM_SEEDS]
    cells = [
        f"{np.mean([r[k][0] for r in randoms]):.3f} | {np.mean([r[k][1] for r in randoms]):.3f}"
        for k in (0, 1)
    ]
    print(f"| random, mean of {len(RANDOM_SEEDS)} seeds | | {cells[0]} | | {cells[1]} |")


def pick(
    strategy: str, model: SegmentationModel, stack: list[TrainingSample], done: set[int], k: int
) -> int:
    """The next slice ``strategy`` corrects (re-ranked with the current model)."""
    if strategy.startswith("random"):
        seed = int(strategy.rsplit(" ", 1)[1])
        order = np.random.default_rng(seed).permutation(len(stack)).tolist()
        return next(z for z in order if z not in done)
    if strategy == "worst-first oracle":
        errors = true_errors(model, stack)
        return max((z for z in range(len(stack)) if z not in done), key=errors.__getitem__)
    measure = strategy.split(": ", 1)[1]
    ranked = stack_ranks(model, stack, done)
    return int(max(ranked, key=lambda r: r.scores[measure]).z)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--start", type=Path, default=WORK / "pretrained_seed0.safetensors")
    parser.add_argument("--parts", default="real,synthetic")
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds per round in (b); 0: skip the loop"
    )
    parser.add_argument("--regions", default="128,192,256", help="square sides (px) in (a)")
    parser.add_argument(
        "--loop-budget", type=float, default=60.0, help="seconds per round in (a); 0: skip"
    )
    args = parser.parse_args()
    if not args.start.is_file():
        print(
            f"{args.start} is missing: write it with scripts/train_default_model.py --stage1 "
            f"{args.start} (or point --start at a model that never saw the slices)"
        )
        return 2
    print(report.header())
    print(f"command: python {' '.join(sys.argv)}")
    print(f"start model: {args.start.name}; default measure: {DEFAULT_MEASURE}")
    model = load_model(args.start)
    parts = args.parts.split(",")
    if "real" in parts:
        if args.data.is_dir():
            regions = [int(v) for v in args.regions.split(",")]
            real_part(model, args.data, regions, args.loop_budget)
        else:
            print(f"(a) skipped: {args.data} (the shared real slices) is absent")
    if "synthetic" in parts:
        synthetic_part(model, args.budget)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
