"""Stacks larger than memory and folders on a cluster: peak memory and seconds per slice.

Runs ``fcnseg predict STACK.zarr --out labels.ome.zarr`` (lazy zarr input, ``--tile auto``,
OME-Zarr output written slice by slice) on single-channel uint16 stacks of 10, 50 and 200 slices
of 1024x1024, chunked per slice, each in a fresh process; then a folder of small stacks with one
process and with a local Dask cluster of 2 worker processes (``--scheduler local --workers 2``).

    python benchmarks/bench_scale.py [--slices 10 50 200] [--base-features 8]

The model is ``SegmentationModel.create(["background", "egg"], 1, depth=4, base_features=F)``
with random weights (speed and memory do not depend on the weights); F=16 is the default-size
model, F=8 keeps the 200-slice run under ten minutes on 2 CPU cores.

Peak memory is the kernel's resident-set high-water mark (VmHWM) of the child process, reset
after imports; "job peak" subtracts the resident set just before the job (interpreter, torch).
"estimate" is :func:`napari_fcnseg.core.memory.choose_tile`'s figure for the same job, made
before it starts. Targets: peak flat (within 10%) from 50 to 200 slices and under 2 GB; seconds
per slice flat; the 2-worker cluster faster than one process on the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _memory import peak_rss_mib, reset_peak, rss_mib

SIZE = 1024


def make_model(path: Path, base_features: int) -> None:
    import torch

    from napari_fcnseg.model.checkpoint import SegmentationModel, save_model

    torch.manual_seed(0)
    model = SegmentationModel.create(["background", "egg"], 1, depth=4, base_features=base_features)
    save_model(model.eval(), path)


def make_stack(path: Path, slices: int, size: int = SIZE) -> None:
    """A blocky (not white-noise) uint16 stack in zarr, one chunk per slice."""
    import zarr

    rng = np.random.default_rng(slices)
    array = zarr.create_array(
        str(path), shape=(slices, size, size), chunks=(1, size, size), dtype=np.uint16
    )
    for z in range(slices):
        base = rng.integers(0, 4000, (size // 8, size // 8), dtype=np.uint16)
        array[z] = np.repeat(np.repeat(base, 8, axis=0), 8, axis=1)


def child(spec: dict) -> dict:
    """Run one ``fcnseg predict`` in this (fresh) process and measure it."""
    import torch  # noqa: F401  (imported before the baseline, as the CLI does)

    from napari_fcnseg.cli import main
    from napari_fcnseg.core.memory import NetworkSize, choose_tile
    from napari_fcnseg.model.checkpoint import load_model

    estimate = None
    if spec.get("estimate_shape"):
        model = load_model(spec["model"])
        estimate = (
            choose_tile(
                NetworkSize.of(model),
                tuple(spec["estimate_shape"]),
                tile=None,
                batch=4,
                input_itemsize=2,
            ).host_bytes
            / 2**20
        )
        del model
    before = rss_mib()
    reset_peak()
    start = time.perf_counter()
    code = main(spec["argv"])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"fcnseg exited with {code}")
    return {
        "seconds": seconds,
        "peak_mib": peak_rss_mib(),
        "job_mib": peak_rss_mib() - before,
        "estimate_mib": estimate,
    }


def _run_child(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--base-features", type=int, default=8)
    parser.add_argument(
        "--folder-stacks",
        type=int,
        default=4,
        help="stacks in the folder of the cluster comparison",
    )
    parser.add_argument(
        "--folder-slices", type=int, default=10, help="slices of each stack in the folder"
    )
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: /tmp)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    work = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=args.work))
    try:
        model = work / "model.safetensors"
        make_model(model, args.base_features)
        rows = []
        for slices in args.slices:
            stack = work / f"stack{slices}.zarr"
            make_stack(stack, slices)
            argv = [
                "predict",
                str(stack),
                "--out",
                str(work / f"labels{slices}.ome.zarr"),
                "--model",
                str(model),
                "--device",
                "cpu",
            ]
            result = _run_child({"argv": argv, "model": str(model), "estimate_shape": [SIZE, SIZE]})
            rows.append({"slices": slices, **result})
            shutil.rmtree(stack)
            print(f"# {slices} slices: {result}", file=sys.stderr)

        folder = work / "folder"
        folder.mkdir()
        for i in range(args.folder_stacks):
            make_stack(folder / f"s{i}.zarr", args.folder_slices)
        common = [
            "predict",
            str(folder),
            "--format",
            "ome-zarr",
            "--model",
            str(model),
            "--device",
            "cpu",
        ]
        single = _run_child({"argv": [*common, "--out", str(work / "one")]})
        cluster = _run_child(
            {
                "argv": [
                    *common,
                    "--out",
                    str(work / "cluster"),
                    "--scheduler",
                    "local",
                    "--workers",
                    "2",
                ]
            }
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nbench_scale: {os.cpu_count()} CPU cores, model depth 4, base features "
        f"{args.base_features}, 1-channel uint16 {SIZE}x{SIZE} slices from zarr, "
        "--tile auto, OME-Zarr output\n"
    )
    print("| slices | seconds | s/slice | peak RSS (MiB) | job peak (MiB) | estimate (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['slices']} | {r['seconds']:.1f} | {r['seconds'] / r['slices']:.2f} | "
            f"{r['peak_mib']:.0f} | {r['job_mib']:.0f} | {r['estimate_mib']:.0f} |"
        )
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        growth = b["peak_mib"] / a["peak_mib"] - 1
        print(
            f"\npeak RSS {a['slices']} -> {b['slices']} slices: {growth:+.1%} (target within "
            f"10%); largest peak {max(r['peak_mib'] for r in rows):.0f} MiB (target < 2048)"
        )
    total = args.folder_stacks * args.folder_slices
    print(
        f"\nfolder of {args.folder_stacks} stacks x {args.folder_slices} slices ({total} slices):\n"
    )
    print("| run | seconds | s/slice | peak RSS of the client (MiB) |")
    print("|---|---:|---:|---:|")
    print(
        f"| one process | {single['seconds']:.1f} | {single['seconds'] / total:.2f} | "
        f"{single['peak_mib']:.0f} |"
    )
    print(
        f"| local cluster, 2 workers | {cluster['seconds']:.1f} | "
        f"{cluster['seconds'] / total:.2f} | {cluster['peak_mib']:.0f} |"
    )
    print(
        f"\ncluster speed-up: {single['seconds'] / cluster['seconds']:.2f}x "
        "(cluster start-up included)"
    )


if __name__ == "__main__":
    main()
