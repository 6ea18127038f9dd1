"""Tiled inference: throughput and peak memory against one untiled forward pass.

Runs the default-size U-Net (depth 4, 16 base features, 3 channels, BatchNorm; about 483k
parameters) on stacks of 1, 10 and 50 RGB slices of 1024x1024, the way ``fcnseg predict`` does
(tiles -> blended probabilities -> labels streamed page by page into a compressed TIFF), each
configuration in a fresh process, next to one untiled forward pass of the same model on one
slice (normalise, forward, softmax, argmax) in the same run.

    python benchmarks/bench_inference.py [--slices 1 10 50] [--device cpu] [--pipeline both]

Peak memory is the kernel's resident-set high-water mark (VmHWM) during the job, reset just
before it; "job peak" subtracts the resident set before the job (interpreter, torch, model and
the input stack, which the caller holds anyway).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _memory import peak_rss_mib, reset_peak, rss_mib

SIZE = 1024


def _model(device: str):
    from napari_fcnseg.model.checkpoint import SegmentationModel

    torch.manual_seed(0)
    return SegmentationModel.create(["background", "egg"], 3).to(device).eval()


def _stack(slices: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (slices, SIZE // 8, SIZE // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)  # blocky, not white noise


def run_untiled(device: str) -> dict:
    from napari_fcnseg.core.normalize import normalization_bounds, normalize_slice

    model = _model(device)
    stack = _stack(1)
    lo, hi = normalization_bounds(stack, model.info.normalization)

    def once() -> None:
        x = torch.from_numpy(normalize_slice(stack[0], lo, hi)[None]).to(device)
        x = x.contiguous(memory_format=torch.channels_last)  # as the tiled path feeds it
        with torch.inference_mode():
            torch.softmax(model(x), 1).argmax(1).cpu().numpy()

    once()  # warm-up
    before = rss_mib()
    reset_peak()
    gpu_before = _reset_gpu_peak(device)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    seconds = min(times)
    return {
        "mode": "untiled forward",
        "slices": 1,
        "tile": SIZE,
        "seconds": seconds,
        "mpix_s": SIZE * SIZE / 1e6 / seconds,
        "peak_mib": peak_rss_mib(),
        "job_mib": peak_rss_mib() - before,
        "gpu_job_mib": _gpu_peak(device, gpu_before),
    }


def _reset_gpu_peak(device: str) -> int:
    """Reset CUDA's peak-memory counter; return the memory allocated now (0 off CUDA)."""
    if not device.startswith("cuda"):
        return 0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def _gpu_peak(device: str, before: int) -> float | None:
    """Peak CUDA memory allocated by the job (above what was allocated before it), MiB."""
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def run_tiled(slices: int, tile: int, batch: int, device: str, pipeline: bool | None) -> dict:
    from napari_fcnseg.core.predict import SlicePrediction, predict_slices
    from napari_fcnseg.io.labels import write_label_pages

    model = _model(device)
    stack = _stack(slices)
    warm = _stack(1)
    for _ in predict_slices(model, warm, tile=tile, batch=batch, device=device):
        pass
    before = rss_mib()
    reset_peak()
    gpu_before = _reset_gpu_peak(device)
    start = time.perf_counter()

    def pages():
        for event in predict_slices(
            model, stack, tile=tile, batch=batch, device=device, pipeline=pipeline
        ):
            if isinstance(event, SlicePrediction):
                yield event.probabilities.argmax(0).astype(np.uint8)

    with tempfile.TemporaryDirectory() as tmp:
        write_label_pages(Path(tmp) / "labels.tif", pages(), shape=stack.shape[:3], dtype=np.uint8)
    seconds = time.perf_counter() - start
    return {
        "mode": "tiled (fcnseg predict path)"
        + {None: "", True: ", pipelined", False: ", sequential"}[pipeline],
        "slices": slices,
        "tile": tile,
        "seconds": seconds,
        "mpix_s": slices * SIZE * SIZE / 1e6 / seconds,
        "peak_mib": peak_rss_mib(),
        "job_mib": peak_rss_mib() - before,
        "gpu_job_mib": _gpu_peak(device, gpu_before),
    }


def _child(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--extra-tile",
        type=int,
        default=512,
        help="also run 10 slices with this smaller tile (0 to skip)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--pipeline",
        choices=["auto", "on", "off", "both"],
        default="auto",
        help="overlap host work with the device's (predict_slices(pipeline=...)): auto = the "
        "default for the device; both = each stack twice, pipelined and sequential",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        result = (
            run_untiled(spec["device"])
            if spec["kind"] == "untiled"
            else run_tiled(
                spec["slices"], spec["tile"], spec["batch"], spec["device"], spec["pipeline"]
            )
        )
        print(json.dumps(result))
        return

    modes = {"auto": [None], "on": [True], "off": [False], "both": [True, False]}[args.pipeline]
    runs = [(n, args.tile) for n in args.slices]
    if args.extra_tile:
        runs.append((10, args.extra_tile))
    rows = [_child({"kind": "untiled", "device": args.device})]
    for n, tile in runs:
        for pipeline in modes:
            spec = {"kind": "tiled", "slices": n, "tile": tile, "batch": args.batch}
            rows.append(_child({**spec, "device": args.device, "pipeline": pipeline}))
    reference = rows[0]["mpix_s"]
    gpu = rows[0]["gpu_job_mib"] is not None
    name = torch.cuda.get_device_name() if gpu else ""
    print(
        f"device: {args.device} {name}, torch threads: {torch.get_num_threads()}, "
        f"model: U-Net depth 4, 16 base features, 3 channels, batch {args.batch}"
    )
    print(
        "| mode | slices of 1024x1024 | tile | seconds | MPix/s | vs untiled "
        "| peak RSS MiB | job peak MiB |" + (" job peak GPU MiB |" if gpu else "")
    )
    print("|---|---|---|---|---|---|---|---|" + ("---|" if gpu else ""))
    for r in rows:
        print(
            f"| {r['mode']} | {r['slices']} | {r['tile']} | {r['seconds']:.2f} | "
            f"{r['mpix_s']:.2f} | {100 * r['mpix_s'] / reference:.0f}% | "
            f"{r['peak_mib']:.0f} | {r['job_mib']:.0f} |"
            + (f" {r['gpu_job_mib']:.0f} |" if gpu else "")
        )
    by_slices = {r["slices"]: r for r in rows[1:] if r["tile"] == args.tile}
    if 10 in by_slices and 50 in by_slices:
        growth = by_slices[50]["job_mib"] / by_slices[10]["job_mib"] - 1
        total = by_slices[50]["peak_mib"] / by_slices[10]["peak_mib"] - 1
        print(
            f"job peak memory growth 10 -> 50 slices: {100 * growth:+.1f}% "
            f"(whole process incl. the input stack: {100 * total:+.1f}%)"
        )


if __name__ == "__main__":
    main()
