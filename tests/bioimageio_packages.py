"""bioimage.io packages made the way other tools make them (tests of :mod:`.model.foreign`).

A tiny convolutional network, its weights as ONNX, TorchScript or a PyTorch state dict with its
architecture source, and the preprocessing and postprocessing steps under test, written with
``bioimageio.spec``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from bioimageio.spec import save_bioimageio_package
from bioimageio.spec.model import v0_5 as v

from tests.helpers import disks

ARCHITECTURE = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, channels_out: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
"""


def _net(channels_out: int) -> torch.nn.Module:
    namespace: dict[str, Any] = {}
    exec(compile(ARCHITECTURE, "architecture.py", "exec"), namespace)  # the test's own code
    torch.manual_seed(0)
    net = namespace["Tiny"](channels_out).eval()
    with torch.no_grad():
        net.conv.weight.mul_(4.0)  # confident enough that a class flips across the image
    return net


def _preprocessing(kind: str) -> list[Any]:
    yx = [v.AxisId("y"), v.AxisId("x")]
    if kind == "scale_range":
        kwargs = v.ScaleRangeKwargs(axes=yx, min_percentile=2.0, max_percentile=98.0)
        return [v.ScaleRangeDescr(kwargs=kwargs)]
    if kind == "zero_mean_unit_variance":
        return [v.ZeroMeanUnitVarianceDescr(kwargs=v.ZeroMeanUnitVarianceKwargs(axes=yx))]
    if kind == "scale_linear":
        return [v.ScaleLinearDescr(kwargs=v.ScaleLinearKwargs(gain=1 / 255, offset=-0.2))]
    if kind == "binarize":
        return [v.BinarizeDescr(kwargs=v.BinarizeKwargs(threshold=0.5))]
    raise AssertionError(kind)


def write_package(
    folder: Path,
    *,
    weights: str = "onnx",
    channels_out: int = 1,
    preprocessing: str = "scale_range",
    input_axes: tuple[str, ...] = ("batch", "channel", "y", "x"),
    fixed_size: int | None = None,
) -> Path:
    """Write a package as another tool would, and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    net = _net(channels_out)
    raw = (disks(1).image.astype(np.float32) * 255)[None].transpose(0, 3, 1, 2).copy()
    lo = np.percentile(raw, 2, axis=(2, 3), keepdims=True)
    hi = np.percentile(raw, 98, axis=(2, 3), keepdims=True)
    with torch.no_grad():
        logits = net(torch.from_numpy((raw - lo) / (hi - lo + 1e-6))).numpy()
    post = [v.SigmoidDescr()] if channels_out == 1 else [v.SoftmaxDescr()]
    expected = (
        1 / (1 + np.exp(-logits))
        if channels_out == 1
        else torch.softmax(torch.from_numpy(logits), 1).numpy()
    )
    np.save(folder / "test_input.npy", raw)
    np.save(folder / "test_output.npy", expected.astype(np.float32))
    example = torch.from_numpy(raw)
    version = v.Version(torch.__version__.split("+")[0])
    entries: dict[str, Any] = {}
    if weights == "onnx":
        torch.onnx.export(
            net,
            (example,),
            str(folder / "weights.onnx"),
            dynamo=False,
            input_names=["raw"],
            output_names=["out"],
            dynamic_axes={"raw": {0: "b", 2: "y", 3: "x"}, "out": {0: "b", 2: "y", 3: "x"}},
        )
        entries["onnx"] = v.OnnxWeightsDescr(source=folder / "weights.onnx", opset_version=17)
    elif weights == "torchscript":
        torch.jit.trace(net, example).save(str(folder / "weights.torchscript.pt"))
        entries["torchscript"] = v.TorchscriptWeightsDescr(
            source=folder / "weights.torchscript.pt", pytorch_version=version
        )
    else:
        (folder / "architecture.py").write_text(ARCHITECTURE)
        torch.save(net.state_dict(), folder / "weights.pt")
        entries["pytorch_state_dict"] = v.PytorchStateDictWeightsDescr(
            source=folder / "weights.pt",
            architecture=v.ArchitectureFromFileDescr(
                source=folder / "architecture.py",
                callable="Tiny",
                kwargs={"channels_out": channels_out},
            ),
            pytorch_version=version,
        )
    size = v.ParameterizedSize(min=16, step=8) if fixed_size is None else fixed_size
    axes = {
        "batch": v.BatchAxis(),
        "channel": v.ChannelAxis(channel_names=[v.Identifier(c) for c in ("r", "g", "b")]),
        "y": v.SpaceInputAxis(id=v.AxisId("y"), size=size),
        "x": v.SpaceInputAxis(id=v.AxisId("x"), size=size),
    }
    names = ["cell"] if channels_out == 1 else ["bg", "cell"][:channels_out]
    ref = {a: v.SizeReference(tensor_id=v.TensorId("raw"), axis_id=v.AxisId(a)) for a in "yx"}
    descr = v.ModelDescr(
        name="another tool model",
        description="a package made the way other tools make them",
        authors=[v.Author(name="someone else")],
        cite=[v.CiteEntry(text="a paper", doi=v.Doi("10.1007/978-3-319-24574-4_28"))],
        license=v.LicenseId("MIT"),
        documentation=_doc(folder),
        inputs=[
            v.InputTensorDescr(
                id=v.TensorId("raw"),
                axes=[axes[a] for a in input_axes],
                test_tensor=v.FileDescr(source=folder / "test_input.npy"),
                preprocessing=_preprocessing(preprocessing),
            )
        ],
        outputs=[
            v.OutputTensorDescr(
                id=v.TensorId("out"),
                axes=[
                    v.BatchAxis(),
                    v.ChannelAxis(channel_names=[v.Identifier(n) for n in names]),
                    v.SpaceOutputAxis(id=v.AxisId("y"), size=ref["y"]),
                    v.SpaceOutputAxis(id=v.AxisId("x"), size=ref["x"]),
                ],
                test_tensor=v.FileDescr(source=folder / "test_output.npy"),
                postprocessing=post,
            )
        ],
        weights=v.WeightsDescr(**entries),
    )
    return save_bioimageio_package(descr, output_path=folder / f"{weights}.zip")


def _doc(folder: Path) -> Any:
    (folder / "README.md").write_text("# another tool's model\n")
    return v.FileDescr(source=folder / "README.md")
