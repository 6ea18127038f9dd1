"""Training step time of the default U-Net: float32, channels-last and bfloat16, side by side.

Runs :func:`napari_fcnseg.training.trainer.fit` (Adam, Dice + cross-entropy, full augmentation,
batch 4 of 256x256 crops) on 3 synthetic bright-field images with the default-size U-Net
(depth 4, 16 base features, about 483k parameters) for each precision/layout setting, in the
same run, and reports the mean time per step after warm-up (steps 6 to the last; no validation
in between). It also times the CPU side alone (sampling and augmenting one batch), which bounds
the step rate on a fast GPU.

    python benchmarks/bench_training.py [--device cpu|cuda] [--steps 40] [--threads N]
        [--batch 4] [--crop 256] [--frozen-bn] [--trainable all|decoder|norm]

``--batch 8 --crop 128 --frozen-bn --trainable decoder`` times the fine-tune policy's steps
(:class:`napari_fcnseg.training.finetune.FineTuneSettings`).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from napari_fcnseg.core.device import resolve_device, training_precision
from napari_fcnseg.core.progress import run_to_completion
from napari_fcnseg.model.checkpoint import SegmentationModel
from napari_fcnseg.training.augment import sample_batch
from napari_fcnseg.training.config import TRAINABLE as TRAINABLE_CHOICES
from napari_fcnseg.training.samples import TrainingSample, prepare_sample
from napari_fcnseg.training.synthetic_brightfield import make_brightfield_slice
from napari_fcnseg.training.trainer import TrainConfig, fit

WARM_UP = 5
SETTINGS = [
    ("float32", False, "float32, contiguous"),
    ("float32", True, "float32, channels-last"),
    ("bfloat16", True, "bfloat16 autocast, channels-last"),
]


def _samples() -> list[TrainingSample]:
    out = []
    for seed in range(100, 103):
        image, labels = make_brightfield_slice((512, 512), rng=seed)
        out.append(TrainingSample(image, labels, name=f"brightfield{seed}"))
    return out


BATCH, CROP, FROZEN, TRAINABLE = 4, 256, False, "all"


def step_seconds(
    samples: list[TrainingSample], device: str, precision: str, cl: bool, steps: int
) -> float:
    torch.manual_seed(0)
    model = SegmentationModel.create(["background", "gland"], 3)
    config = TrainConfig(
        max_steps=steps,
        validate_every=10 * steps,
        batch_size=BATCH,
        crop=CROP,
        freeze_batchnorm=FROZEN,
        trainable=TRAINABLE,
        learning_rate=1e-3,
        device=device,
        precision=precision,
        channels_last=cl,
        recalibrate_batchnorm=False,
        seed=0,
    )
    stamps: dict[int, float] = {}

    def on_event(event) -> None:
        if event.info.get("phase") == "unet" and event.step not in stamps:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            stamps[event.step] = time.perf_counter()

    run_to_completion(fit(model, samples, [], config), on_event)
    return (stamps[steps] - stamps[WARM_UP]) / (steps - WARM_UP)


def batch_seconds(samples: list[TrainingSample], repeats: int = 20) -> float:
    normalization = SegmentationModel.create(["background", "gland"], 3).info.normalization
    prepared = [prepare_sample(s, 3, normalization) for s in samples]
    rng = np.random.default_rng(0)
    sample_batch(prepared, BATCH, CROP, rng, augment=True, channel_permutation=False)
    start = time.perf_counter()
    for _ in range(repeats):
        sample_batch(prepared, BATCH, CROP, rng, augment=True, channel_permutation=False)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    global BATCH, CROP, FROZEN, TRAINABLE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--crop", type=int, default=CROP)
    parser.add_argument("--frozen-bn", action="store_true", help="BatchNorm statistics frozen")
    parser.add_argument("--trainable", choices=TRAINABLE_CHOICES, default=TRAINABLE)
    args = parser.parse_args()
    BATCH, CROP, FROZEN, TRAINABLE = args.batch, args.crop, args.frozen_bn, args.trainable
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    samples = _samples()
    print(
        f"device: {device.type} ({name}), {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}; default U-Net, batch {BATCH}, "
        f"{CROP}x{CROP} crops{', frozen BatchNorm' if FROZEN else ''}, trains {TRAINABLE} "
        f"weights, mean of steps "
        f"{WARM_UP + 1}-{args.steps}"
    )
    auto = training_precision("auto", device)
    print(f"precision 'auto' on this device: {str(auto).removeprefix('torch.')}\n")
    print("| setting | seconds per step | steps per second | vs float32 contiguous |")
    print("|---|---|---|---|")
    first = None
    for precision, cl, label in SETTINGS:
        t = step_seconds(samples, str(device), precision, cl, args.steps)
        first = first or t
        print(f"| {label} | {t:.3f} | {1 / t:.1f} | {first / t:.2f}x |")
    data = batch_seconds(samples)
    print(
        f"\nSampling and augmenting one batch on the CPU alone: {data:.3f} s "
        f"(at most {1 / data:.0f} steps per second whatever the device)"
    )


if __name__ == "__main__":
    main()
