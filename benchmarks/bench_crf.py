"""Speed and agreement of refine_with_crf against pydensecrf (same inputs, same run).

Inputs: a real Drosophila ovary slice (../shared/data/drosophila_ovary) padded by reflection to
1024x1024 RGB, and a 20x512x512 RGB stack made of that slice resized to 512x512 and shifted by
3 px per slice; without the shared data, scikit-image's astronaut image is used instead.
Probabilities: 2 classes (egg / background) from blurred labels plus smooth noise. 5 mean-field
iterations. pydensecrf runs the stack slice by slice. Prints a markdown table.

Run: .venv/bin/python benchmarks/bench_crf.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage import data, io, transform

from napari_fcnseg.core.crf import DEFAULTS, refine_with_crf
from napari_fcnseg.model.crf_rnn import scale_intensities

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "drosophila_ovary"


def load_inputs() -> tuple[np.ndarray, np.ndarray, str]:
    if DATA.is_dir():
        image = io.imread(DATA / "image" / "insitu4174.jpg")
        labels = (io.imread(DATA / "annot_struct" / "insitu4174.png") > 0).astype(np.uint8)
        source = "real slice insitu4174 (659x1033), reflect-padded/cropped to 1024x1024"
    else:
        image = data.astronaut()
        labels = (image.mean(-1) > 110).astype(np.uint8)
        source = "scikit-image astronaut, resized to 1024x1024"
        image = (transform.resize(image, (1024, 1024)) * 255).astype(np.uint8)
        labels = transform.resize(labels, (1024, 1024), order=0).astype(np.uint8)
    pad = [(0, max(0, 1024 - s)) for s in labels.shape]
    image = np.pad(image, [*pad, (0, 0)], mode="reflect")[:1024, :1024]
    labels = np.pad(labels, pad, mode="reflect")[:1024, :1024]
    return image, labels, source


def probabilities(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    onehot = np.stack([labels == 0, labels == 1]).astype(np.float32)
    sig = [0] + [6] * labels.ndim
    scores = ndi.gaussian_filter(onehot, sig)
    scores += ndi.gaussian_filter(rng.normal(0, 0.6, onehot.shape), [0] + [2] * labels.ndim)
    p = np.exp(3 * scores)
    return (p / p.sum(0)).astype(np.float32)


def make_stack(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = (transform.resize(image, (512, 512)) * 255).astype(np.uint8)
    lab = transform.resize(labels, (512, 512), order=0, preserve_range=True).astype(np.uint8)
    stack = np.stack([np.roll(img, 3 * z, axis=(0, 1)) for z in range(20)])
    stack_labels = np.stack([np.roll(lab, 3 * z, axis=(0, 1)) for z in range(20)])
    return stack, stack_labels


def pydensecrf_2d(image: np.ndarray, probs: np.ndarray) -> np.ndarray:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    k, h, w = probs.shape
    scaled = scale_intensities(torch.from_numpy(np.moveaxis(image, -1, 0).astype(np.float32)))
    rgb = np.ascontiguousarray(np.moveaxis(scaled.round().byte().numpy(), 0, -1))
    d = dcrf.DenseCRF2D(w, h, k)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs, clip=1e-5)))
    _add_pairwise(d, rgb)
    return np.array(d.inference(DEFAULTS["iterations"]), dtype=np.float32).reshape(k, h, w)


def _add_pairwise(d, rgb: np.ndarray) -> None:
    """The kernels of refine_with_crf's defaults, in pydensecrf's terms."""
    d.addPairwiseGaussian(sxy=DEFAULTS["gaussian_sxy"], compat=DEFAULTS["gaussian_compat"])
    d.addPairwiseBilateral(
        sxy=DEFAULTS["bilateral_sxy"],
        srgb=DEFAULTS["bilateral_srgb"],
        rgbim=rgb,
        compat=DEFAULTS["bilateral_compat"],
    )


def pydensecrf_stack(stack: np.ndarray, probs: np.ndarray) -> np.ndarray:
    # Scale like refine_with_crf does (over the whole stack), then slice by slice.
    scaled = scale_intensities(torch.from_numpy(np.moveaxis(stack, -1, 0).astype(np.float32)))
    rgb = np.moveaxis(scaled.numpy(), 0, -1)
    out = np.empty_like(probs)
    for z in range(stack.shape[0]):
        out[:, z] = _pydensecrf_prescaled(rgb[z], probs[:, z])
    return out


def _pydensecrf_prescaled(rgb: np.ndarray, probs: np.ndarray) -> np.ndarray:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    k, h, w = probs.shape
    d = dcrf.DenseCRF2D(w, h, k)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs, clip=1e-5)))
    _add_pairwise(d, np.ascontiguousarray(rgb.round().astype(np.uint8)))
    return np.array(d.inference(DEFAULTS["iterations"]), dtype=np.float32).reshape(k, h, w)


def timed(
    fn: Callable[[], np.ndarray], repeats: int, sync: bool = False
) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if sync:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    assert out is not None
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="runs per method; the best is kept")
    args = parser.parse_args()
    image, labels, source = load_inputs()
    probs = probabilities(labels)
    stack, stack_labels = make_stack(image, labels)
    stack_probs = probabilities(stack_labels, seed=1)
    try:
        import pydensecrf  # noqa: F401

        have_reference = True
    except ImportError:
        have_reference = False

    rows: list[tuple[str, str, float, str]] = []
    # 2D methods run interleaved, best of --repeats each (the machine may be shared).
    methods: dict[str, tuple[int, Callable[[], np.ndarray]]] = {}
    if have_reference:
        methods["pydensecrf2 (C++, 1 thread)"] = (1, lambda: pydensecrf_2d(image, probs))
    cpus = os.cpu_count() or 1
    for threads, f in ((1, None), (1, 4), (1, 1), (cpus, None)):
        if threads == 1 and cpus == 1 and (threads, f) in methods:
            continue
        name = (
            f"ours, CPU {threads} thread{'s' * (threads > 1)}, bilateral blocks {f or 'auto (2)'}"
        )
        methods[name] = (
            threads,
            lambda f=f: refine_with_crf(image, probs, device="cpu", bilateral_downsample=f),
        )
    best: dict[str, float] = dict.fromkeys(methods, float("inf"))
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, (threads, fn) in methods.items():
            torch.set_num_threads(threads)
            t, outputs[name] = timed(fn, 1)
            best[name] = min(best[name], t)
    reference_2d = outputs.get("pydensecrf2 (C++, 1 thread)")
    for name in methods:
        agree = (
            "reference"
            if name.startswith("pydensecrf")
            else _agreement(outputs[name], reference_2d)
        )
        rows.append(("1024x1024 RGB", name, best[name], agree))
    reference_3d = None
    # The stack runs on every core, as users run it (pydensecrf uses one thread whatever this says).
    torch.set_num_threads(cpus)
    if have_reference:
        t, reference_3d = timed(lambda: pydensecrf_stack(stack, stack_probs), 1)
        rows.append(("20x512x512 RGB", "pydensecrf2, slice by slice", t, "reference"))
    threads = torch.get_num_threads()
    t, ours = timed(lambda: refine_with_crf(stack, stack_probs, device="cpu"), 1)
    rows.append(
        (
            "20x512x512 RGB",
            f"ours, CPU {threads} threads, slice by slice",
            t,
            _agreement(ours, reference_3d),
        )
    )
    t, ours3d = timed(
        lambda: refine_with_crf(stack, stack_probs, device="cpu", spacing=(1, 1, 1)), 1
    )
    rows.append(
        (
            "20x512x512 RGB",
            f"ours, CPU {threads} threads, one 3D CRF (spacing 1,1,1)",
            t,
            "n/a (3D model); " + _agreement(ours3d, reference_3d),
        )
    )
    if torch.cuda.is_available():
        refine_with_crf(image, probs, device="cuda")  # warm-up
        t, ours = timed(
            lambda: refine_with_crf(image, probs, device="cuda"), args.repeats, sync=True
        )
        rows.append(
            (
                "1024x1024 RGB",
                f"ours, CUDA ({torch.cuda.get_device_name()})",
                t,
                _agreement(ours, reference_2d),
            )
        )
        t, ours = timed(
            lambda: refine_with_crf(stack, stack_probs, device="cuda", spacing=(1, 1, 1)),
            1,
            sync=True,
        )
        rows.append(("20x512x512 RGB", "ours, CUDA, one 3D CRF", t, "n/a (3D model)"))
    cuda_note = "" if torch.cuda.is_available() else "CUDA: not available on this machine, skipped."

    print(
        f"Input: {source}. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}. Best of {args.repeats} runs "
        "(stack: 1 run). 2 classes, 5 iterations, default parameters.\n"
    )
    print("| input | method | seconds | label agreement with pydensecrf |")
    print("|---|---|---|---|")
    for inp, method, t, agree in rows:
        print(f"| {inp} | {method} | {t:.2f} | {agree} |")
    if cuda_note:
        print(f"\n{cuda_note}")


def _agreement(ours: np.ndarray, reference: np.ndarray | None) -> str:
    if reference is None:
        return "n/a (pydensecrf not installed)"
    return f"{100 * (ours.argmax(0) == reference.argmax(0)).mean():.2f}%"


if __name__ == "__main__":
    main()
