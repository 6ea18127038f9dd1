"""bioimage.io packages from other tools, run through ``bioimageio.core``.

A package that napari-fcnseg did not write has no model file of ours inside
(:mod:`.package`); :func:`load_foreign_package` wraps it as a :class:`ForeignModel`, a
:class:`~.checkpoint.SegmentationModel` that segments (tiling, Refine with CRF, labels, the
CLI and the Segment dock work as with our models) but cannot be fine-tuned or re-exported.

What runs, and when (docs/trust.md, "What is trusted"):

* **ONNX weights** run through ``onnxruntime``: an ONNX file is a graph of operators, not
  code, so they run without asking;
* **TorchScript and PyTorch state-dict weights** need unpickling (and, for a state dict, the
  package's architecture source run as Python): they run only when the caller passes
  ``trust_model_code=True`` (``--trust-model-code``, or the Segment dock's confirmation);
* anything else is refused.

Only 2D semantic segmentation fits what the plugin does: one input and one output tensor with
axes (batch, channel, y, x) (batch and channel optional), the output as large as the input,
its channels the classes (one channel: the foreground probability). The package's
preprocessing is mapped to our normalisation record (``scale_range`` to percentiles,
``zero_mean_unit_variance``, ``fixed_zero_mean_unit_variance`` and ``scale_linear``), and its
postprocessing (``sigmoid``, ``softmax``, ``clip``) applied in :meth:`ForeignModel.forward`;
packages with other steps are refused with a message that names them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelFileError
from .checkpoint import ModelInfo, SegmentationModel
from .package import is_bioimageio_package, is_our_package, weight_formats

#: Weight formats run without asking: no code is run and nothing is unpickled.
SAFE_FORMATS = ("onnx",)
#: Weight formats that run only when the package's code is trusted.
TRUSTED_FORMATS = ("torchscript", "pytorch_state_dict")
_SPATIAL = ("y", "x")


class UntrustedModelError(ModelFileError):
    """A package whose weights would run its code or need unpickling, not trusted yet."""

    def __init__(self, path: Path, formats: Sequence[str]):
        self.path = path
        self.formats = tuple(formats)
        super().__init__(
            f"{path}: this bioimage.io package has {' and '.join(self.formats)} weights, which "
            "run code from the package (unpickling, or its architecture source). Run it only if "
            "you trust where it came from: pass --trust-model-code (in napari: answer Yes when "
            "asked). Packages with ONNX weights run without this (pip install onnxruntime)"
        )


@dataclass(frozen=True)
class _Plan:
    """What :class:`ForeignModel` needs to know about the package's tensors."""

    input_id: str
    input_axes: tuple[str, ...]
    output_axes: tuple[str, ...]
    min_size: tuple[int, int]
    step: tuple[int, int]
    batch_one: bool
    post: tuple[tuple[str, dict[str, Any]], ...]
    channels_out: int


class ForeignModel(SegmentationModel):
    """A bioimage.io package from another tool, as a model that segments.

    Calling it maps a normalised batch (N, C, H, W) to class logits (N, K, H, W) like the
    U-Net does: the package's network runs on the CPU through ``bioimageio.core``'s model
    adapter, its postprocessing is applied, and the probabilities are returned as logs (so
    that a softmax gives them back). Tiles of any size are padded to one the package accepts
    and cropped back.
    """

    def __init__(self, info: ModelInfo, adapter: Any, plan: _Plan, weight_format: str):
        nn.Module.__init__(self)
        self.info = info
        self.adapter = adapter
        self.plan = plan
        self.weight_format = weight_format

    @property
    def required_multiple(self) -> int:
        """Tile sides are multiples of this: the package's size steps.

        :meth:`forward` pads a tile to a size the package accepts (at least its minimum) and
        crops the output back.
        """
        return math.lcm(*self.plan.step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return log-probabilities (N, K, H, W) for a normalised batch."""
        from bioimageio.core import Tensor

        plan = self.plan
        h, w = int(x.shape[-2]), int(x.shape[-1])
        size = tuple(_valid_size(n, lo, st) for n, lo, st in zip((h, w), plan.min_size, plan.step))
        arr = x.detach().float().cpu().numpy()
        if size != (h, w):
            pad = ((0, 0), (0, 0), (0, size[0] - h), (0, size[1] - w))
            if size[0] - h < h and size[1] - w < w:
                arr = np.pad(arr, pad, mode="reflect")
            else:
                arr = np.pad(arr, pad, mode="edge")
        outputs = []
        for batch in [arr[i : i + 1] for i in range(len(arr))] if plan.batch_one else [arr]:
            member = batch
            if "channel" not in plan.input_axes:
                member = member[:, 0]
            if "batch" not in plan.input_axes:
                member = member[0]
            result = self.adapter.forward({plan.input_id: Tensor(member, dims=plan.input_axes)})
            out = np.asarray(next(iter(result.values())).data, dtype=np.float32)
            if "batch" not in plan.output_axes:
                out = out[None]
            if "channel" not in plan.output_axes:
                out = out[:, None]
            outputs.append(out)
        probs = _postprocess(np.concatenate(outputs)[..., :h, :w], plan.post)
        if probs.shape[1] == 1:
            probs = np.concatenate([1.0 - probs, probs], axis=1)
        return torch.from_numpy(np.log(np.clip(probs, 1e-6, 1.0))).to(x.device)


def load_foreign_package(
    path: str | os.PathLike[str], *, trust_model_code: bool = False
) -> ForeignModel:
    """Open a bioimage.io package from another tool as a model that segments.

    Raises
    ------
    UntrustedModelError
        When only weights that run the package's code are present and ``trust_model_code`` is
        false.
    ModelFileError
        When the package is invalid, is not 2D semantic segmentation, needs a step we cannot
        reproduce, or its runtime (``bioimageio.core``, ``onnxruntime``) is not installed.
    """
    path = Path(path)
    descr = _describe(path)
    formats = [f for f in (*SAFE_FORMATS, *TRUSTED_FORMATS) if getattr(descr.weights, f, None)]
    usable = [f for f in formats if f in SAFE_FORMATS or trust_model_code]
    if not formats:
        present = [f for f, w in descr.weights if w is not None]
        raise ModelFileError(
            f"{path}: napari-fcnseg runs ONNX, TorchScript or PyTorch weights; this package has "
            f"{', '.join(present)}. Run it with the tool it was made for"
        )
    if not usable:
        raise UntrustedModelError(path, formats)
    plan, info = _plan(path, descr)
    weight_format = usable[0]
    if weight_format == "onnx" and not _has_onnxruntime():
        others = [f for f in usable if f != "onnx"]
        if others:
            weight_format = others[0]
        elif any(f in TRUSTED_FORMATS for f in formats):
            raise UntrustedModelError(path, [f for f in formats if f != "onnx"])
        else:
            raise ModelFileError(
                f"{path} has ONNX weights: install onnxruntime to run it (pip install onnxruntime)"
            )
    from bioimageio.core.backends import create_model_adapter

    try:
        adapter = create_model_adapter(
            descr,
            devices=None,
            weight_format_priority_order=[weight_format],  # type: ignore[list-item]
        )
    except Exception as exc:  # the adapter's errors come from four runtimes and user code
        raise ModelFileError(
            f"{path}: its {weight_format} weights could not be loaded ({exc})"
        ) from None
    info.provenance["weights"] = weight_format
    return ForeignModel(info, adapter, plan, weight_format)


def code_formats(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Return the weight formats that would run the package's code, if nothing safer can run.

    Empty for our own packages, model files, and packages whose ONNX weights can run here; the
    caller asks the user before loading with ``trust_model_code`` when this is not empty. Reads
    only the package's description (fast enough for a form's thread); loading validates it.
    """
    if not is_bioimageio_package(path) or is_our_package(path):
        return ()
    formats = weight_formats(path)
    if "onnx" in formats and _has_onnxruntime():
        return ()
    return tuple(f for f in TRUSTED_FORMATS if f in formats)


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def read_foreign_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Describe another tool's package (classes, channels, normalisation) without running it."""
    path = Path(path)
    _, info = _plan(path, _describe(path))
    return info


def _describe(path: Path) -> Any:
    try:
        from bioimageio.spec import InvalidDescr, load_model_description
    except ImportError:
        raise ModelFileError(
            f"{path} is a bioimage.io package from another tool: running it needs "
            'bioimageio.core (pip install "napari-fcnseg[bioimageio]")'
        ) from None
    try:
        descr = load_model_description(path, perform_io_checks=False)
    except Exception as exc:  # bioimageio.spec raises validation and I/O errors of many types
        raise ModelFileError(f"{path} is not a valid bioimage.io model package ({exc})") from None
    if isinstance(descr, InvalidDescr):
        raise ModelFileError(f"{path} is not a valid bioimage.io model package")
    if descr.format_version.split(".")[:2] != ["0", "5"]:
        raise ModelFileError(
            f"{path} uses the bioimage.io model format {descr.format_version}; napari-fcnseg "
            "reads format 0.5 (bioimageio.core can update the package: bioimageio update-format)"
        )
    return descr


def _plan(path: Path, descr: Any) -> tuple[_Plan, ModelInfo]:
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise ModelFileError(
            f"{path}: napari-fcnseg runs models with one input and one output tensor; this one "
            f"has {len(descr.inputs)} and {len(descr.outputs)}"
        )
    inp, out = descr.inputs[0], descr.outputs[0]
    in_axes = _axes(path, "input", inp)
    out_axes = _axes(path, "output", out)
    min_size: list[int] = []
    step: list[int] = []
    for axis_id in _SPATIAL:
        axis = next(a for a in inp.axes if str(a.id) == axis_id)
        size = axis.size
        if isinstance(size, int):
            raise ModelFileError(
                f"{path}: its input takes only {size} px along {axis_id}; napari-fcnseg tiles "
                "images and needs a model that takes tiles of several sizes"
            )
        if not hasattr(size, "min"):
            raise ModelFileError(f"{path}: its input size along {axis_id} is not understood")
        min_size.append(int(size.min))
        step.append(max(1, int(size.step)))
        out_axis = next(a for a in out.axes if str(a.id) == axis_id)
        ref = out_axis.size
        if not (
            getattr(ref, "tensor_id", None) == inp.id
            and str(getattr(ref, "axis_id", "")) == axis_id
            and int(getattr(ref, "offset", 0)) == 0
            and float(getattr(out_axis, "scale", 1.0)) == 1.0
        ):
            raise ModelFileError(
                f"{path}: its output is not the input's size along {axis_id}; napari-fcnseg "
                "runs semantic-segmentation models whose output matches the input"
            )
    channels_in = _channels(inp)
    channels_out = _channels(out)
    names = _class_names(out, channels_out)
    batch = next((a for a in inp.axes if str(a.id) == "batch"), None)
    batch_one = batch is None or getattr(batch, "size", None) == 1
    plan = _Plan(
        input_id=str(inp.id),
        input_axes=in_axes,
        output_axes=out_axes,
        min_size=(min_size[0], min_size[1]),
        step=(step[0], step[1]),
        batch_one=batch_one,
        post=_postprocessing(path, out.postprocessing),
        channels_out=channels_out,
    )
    info = ModelInfo(
        class_names=names,
        in_channels=channels_in,
        architecture={"name": "bioimageio", "package": descr.name},
        normalization=_normalization(path, inp.preprocessing, channels_in),
        provenance={"bioimageio_package": str(path), "name": descr.name},
    )
    return plan, info


def _axes(path: Path, which: str, tensor: Any) -> tuple[str, ...]:
    axes = tuple(str(a.id) for a in tensor.axes)
    wanted = tuple(a for a in ("batch", "channel", "y", "x") if a in axes)
    if axes != wanted or not set(_SPATIAL) <= set(axes):
        raise ModelFileError(
            f"{path}: its {which} has axes ({', '.join(axes)}); napari-fcnseg runs 2D "
            "semantic-segmentation models with (batch, channel, y, x) tensors"
        )
    return axes


def _channels(tensor: Any) -> int:
    channel = next((a for a in tensor.axes if str(a.id) == "channel"), None)
    return 1 if channel is None else len(channel.channel_names)


def _class_names(out: Any, channels: int) -> list[str]:
    channel = next((a for a in out.axes if str(a.id) == "channel"), None)
    names = [str(n) for n in channel.channel_names] if channel is not None else ["foreground"]
    if channels == 1:
        return ["background", names[0]]
    return names


def _normalization(path: Path, steps: Sequence[Any], channels: int) -> dict[str, Any]:
    """Our normalisation record for the package's preprocessing."""
    found: list[dict[str, Any]] = []
    for step in steps:
        op = str(step.id)
        kwargs: Any = getattr(step, "kwargs", None)
        if op == "ensure_dtype":
            continue
        joint = "channel" in [str(a) for a in (getattr(kwargs, "axes", None) or [])]
        if op == "scale_range" and kwargs.reference_tensor is None:
            found.append(
                {
                    "method": "percentile",
                    "low": float(kwargs.min_percentile),
                    "high": float(kwargs.max_percentile),
                    "joint": joint,
                    "eps": float(kwargs.eps),
                }
            )
        elif op == "zero_mean_unit_variance":
            found.append({"method": "mean_std", "joint": joint, "eps": float(kwargs.eps)})
        elif op == "fixed_zero_mean_unit_variance":
            mean = np.broadcast_to(np.asarray(kwargs.mean, dtype=np.float64), (channels,))
            std = np.broadcast_to(np.asarray(kwargs.std, dtype=np.float64), (channels,))
            found.append(_fixed(mean, mean + std))
        elif op == "scale_linear":
            gain = np.broadcast_to(np.asarray(kwargs.gain, dtype=np.float64), (channels,))
            offset = np.broadcast_to(np.asarray(kwargs.offset, dtype=np.float64), (channels,))
            if np.any(gain == 0):
                raise ModelFileError(f"{path}: its scale_linear preprocessing has a zero gain")
            low = -offset / gain
            found.append(_fixed(low, low + 1.0 / gain))
        else:
            raise ModelFileError(
                f"{path}: its input preprocessing {op!r} has no equivalent in napari-fcnseg; "
                "run the package with the tool it was made for"
            )
    if len(found) > 1:
        raise ModelFileError(
            f"{path}: its input preprocessing has {len(found)} scaling steps; napari-fcnseg "
            "reproduces one"
        )
    return found[0] if found else _fixed(np.zeros(channels), np.ones(channels))


def _fixed(low: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    return {"method": "fixed", "low": [float(v) for v in low], "high": [float(v) for v in high]}


def _postprocessing(path: Path, steps: Sequence[Any]) -> tuple[tuple[str, dict[str, Any]], ...]:
    post: list[tuple[str, dict[str, Any]]] = []
    for step in steps:
        op = str(step.id)
        kwargs: Any = getattr(step, "kwargs", None)
        if op == "ensure_dtype":
            continue
        if op == "sigmoid":
            post.append((op, {}))
        elif op == "softmax":
            post.append((op, {}))
        elif op == "clip":
            post.append((op, {"min": kwargs.min, "max": kwargs.max}))
        else:
            raise ModelFileError(
                f"{path}: its output postprocessing {op!r} does not give probabilities that "
                "napari-fcnseg can use; run the package with the tool it was made for"
            )
    return tuple(post)


def _postprocess(out: np.ndarray, post: Sequence[tuple[str, dict[str, Any]]]) -> np.ndarray:
    for op, kwargs in post:
        if op == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-out))
        elif op == "softmax":
            e = np.exp(out - out.max(axis=1, keepdims=True))
            out = e / e.sum(axis=1, keepdims=True)
        elif op == "clip":
            out = np.clip(out, kwargs["min"], kwargs["max"])
    return out


def _valid_size(n: int, low: int, step: int) -> int:
    """Return the smallest size ``low + k * step`` (k >= 0) that is at least ``n``."""
    if n <= low:
        return low
    return low + -(-(n - low) // step) * step
