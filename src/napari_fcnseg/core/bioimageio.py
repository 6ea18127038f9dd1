"""Export a model as a bioimage.io package, and read one back (``fcnseg export-bmz``).

The package follows the current model spec (``bioimageio.spec`` 0.5, an optional extra:
``pip install "napari-fcnseg[bioimageio]"``) so the model runs in every tool that reads the
model zoo's format (ilastik, deepImageJ, QuPath, bioimageio.core):

* a self-contained architecture source (the U-Net module with a softmax head, nothing else
  imported), and ``pytorch_state_dict`` weights plus TorchScript weights traced from them
  (when the model traces);
* ``scale_range`` preprocessing with our percentiles (1-99.8 per channel over the image), so
  other tools feed the network what we feed it, and class probabilities out;
* test input and output tensors from a synthetic egg-chamber slice, a cover image, the model
  card as documentation, the citations;
* our own metadata (classes, normalisation, working scale, CRF settings) in ``config`` and the
  ``.safetensors`` file as an attachment: ``load_model`` reads a package we wrote back
  through that attachment (:mod:`..model.package`), losslessly and without running code
  from the package.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import tempfile
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..errors import InputError, ModelFileError
from ..io.atomic import atomic_output
from ..model import unet as unet_module
from ..model.checkpoint import SegmentationModel, save_model
from ..model.package import ATTACHMENT
from .normalize import normalization_bounds, normalize_slice
from .progress import Progress, run_to_completion

log = logging.getLogger(__name__)

#: The config key of our metadata.
CONFIG_KEY = "napari_fcnseg"
#: Side of the square test tensors (a multiple of every U-Net depth we build).
TEST_SIZE = 256
#: (text, DOI, URL) of what to cite, as in CITATION.cff.
CITATIONS = (
    ("Ronneberger, Fischer & Brox (2015): U-Net", "10.1007/978-3-319-24574-4_28", None),
    (
        "Zheng et al. (2015): Conditional Random Fields as Recurrent Neural Networks",
        "10.1109/ICCV.2015.179",
        None,
    ),
    (
        "Borovec, Kybic & Nava (2017): Detection and Localization of Drosophila Egg Chambers in "
        "Microscopy Images (MLMI); the egg-chamber data",
        None,
        "https://github.com/Borda/pyImSegm",
    ),
)
_HEAD = '''

class FcnsegUNet(nn.Module):
    """napari-fcnseg's U-Net with a softmax head: class probabilities out."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.unet = UNet(**kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.unet(x), dim=1)
'''


def _spec() -> Any:
    try:
        from bioimageio.spec.model import v0_5
    except ImportError:
        raise InputError(
            'bioimage.io export needs bioimageio.core: pip install "napari-fcnseg[bioimageio]"'
        ) from None
    return v0_5


def architecture_source() -> str:
    """Return the U-Net module as one file that imports only torch, with ``FcnsegUNet``."""
    source = inspect.getsource(unet_module)
    source = source.replace(
        "from ..errors import InputError\n",
        '\n\nclass InputError(ValueError):\n    """A bad input shape or setting."""\n',
    )
    if "from .." in source:  # a new relative import would break the package elsewhere
        raise RuntimeError("model/unet.py imports from the package: update architecture_source")
    return source + _HEAD


def iter_export_bioimageio(
    model: SegmentationModel,
    out: str | os.PathLike[str],
    test_image: np.ndarray,
    *,
    name: str,
    description: str,
    documentation: str,
    authors: Sequence[str] = ("napari-fcnseg developers",),
    overwrite: bool = False,
) -> Generator[Progress, None, Path]:
    """Write ``model`` as a bioimage.io package (``.zip``) at ``out``, yielding progress.

    ``test_image`` is a (Y, X, C) image of what the model segments; a centred
    :data:`TEST_SIZE` square of it becomes the package's test input. ``documentation`` is the
    model card (markdown). The package is validated and its test tensors reproduced with
    ``bioimageio.core`` before it is moved into place; a failure leaves nothing at ``out``.
    """
    v = _spec()
    from bioimageio.core import test_model
    from bioimageio.spec import save_bioimageio_package

    from ..model.foreign import ForeignModel

    if isinstance(model, ForeignModel):
        raise InputError(
            f"{model.info.provenance.get('bioimageio_package')} is already a bioimage.io "
            "package (from another tool): share that file as it is"
        )
    info = model.info
    if info.scale != 1.0:
        raise InputError(
            f"this model works at scale {info.scale}; the bioimage.io format has no resizing "
            "step, so export a model that works at scale 1"
        )
    model = model.cpu().eval()
    yield Progress(0, 3, "bioimage.io: computing the test tensors")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw = _test_input(test_image, info.in_channels, model.required_multiple)
        lo, hi = normalization_bounds(raw[None], info.normalization)
        normalised = normalize_slice(raw, lo, hi)[None]
        with torch.inference_mode():
            probabilities = torch.softmax(model(torch.from_numpy(normalised)), dim=1).numpy()
        np.save(tmp / "test_input.npy", np.ascontiguousarray(raw.transpose(2, 0, 1)[None]))
        np.save(tmp / "test_output.npy", probabilities.astype(np.float32))
        (tmp / "architecture.py").write_text(architecture_source(), encoding="utf-8")
        # FcnsegUNet holds the network as ``unet``, as SegmentationModel does: same keys.
        unet_state = {k: t for k, t in model.state_dict().items() if k.startswith("unet.")}
        torch.save(unet_state, tmp / "weights.pt")
        save_model(model, tmp / ATTACHMENT)
        (tmp / "README.md").write_text(documentation, encoding="utf-8")
        _cover(raw, probabilities[0], tmp / "cover.png")
        kwargs = {k: v_ for k, v_ in info.architecture.items() if k != "name"}
        descr = v.ModelDescr(
            name=name,
            description=description,
            authors=[v.Author(name=a) for a in authors],
            cite=[
                v.CiteEntry(text=text, doi=v.Doi(doi) if doi else None, url=url)
                for text, doi, url in CITATIONS
            ],
            license=v.LicenseId("BSD-3-Clause"),
            documentation=v.FileDescr(source=tmp / "README.md"),
            covers=[v.FileDescr(source=tmp / "cover.png")],
            tags=["napari-fcnseg", "unet", "semantic-segmentation", "2d", "pytorch"],
            inputs=[_input(v, info, tmp / "test_input.npy", model.required_multiple)],
            outputs=[_output(v, info, tmp / "test_output.npy")],
            weights=v.WeightsDescr(
                pytorch_state_dict=v.PytorchStateDictWeightsDescr(
                    source=tmp / "weights.pt",
                    architecture=v.ArchitectureFromFileDescr(
                        source=tmp / "architecture.py", callable="FcnsegUNet", kwargs=kwargs
                    ),
                    pytorch_version=v.Version(torch.__version__.split("+")[0]),
                ),
                torchscript=_torchscript(v, model, normalised, tmp / "weights.torchscript.pt"),
            ),
            attachments=[v.FileDescr(source=tmp / ATTACHMENT)],
            config={CONFIG_KEY: _our_metadata(model)},
        )
        yield Progress(1, 3, "bioimage.io: validating the package and running its test")
        formats: list[Literal["pytorch_state_dict", "torchscript"]] = ["pytorch_state_dict"]
        if descr.weights.torchscript is not None:
            formats.append("torchscript")
        for weight_format in formats:
            summary = test_model(descr, weight_format=weight_format)
            if summary.status != "passed":
                raise ModelFileError(
                    f"the bioimage.io package ({weight_format} weights) did not pass its own "
                    f"test:\n{summary}"
                )
        yield Progress(2, 3, "bioimage.io: writing the package")
        with atomic_output(out, overwrite=overwrite) as target:
            save_bioimageio_package(descr, output_path=Path(target).with_suffix(".zip"))
            Path(target).with_suffix(".zip").replace(target)
    yield Progress(3, 3, f"bioimage.io: wrote {out}")
    return Path(out)


def export_bioimageio(
    model: SegmentationModel,
    out: str | os.PathLike[str],
    test_image: np.ndarray,
    **kwargs: Any,
) -> Path:
    """Write a bioimage.io package like :func:`iter_export_bioimageio`, without progress."""
    return run_to_completion(iter_export_bioimageio(model, out, test_image, **kwargs))


def package_texts(model: SegmentationModel, path: Path) -> dict[str, str]:
    """Name, description and documentation of a package of the model file at ``path``."""
    classes = ", ".join(model.info.class_names)
    return {
        "name": f"napari-fcnseg {path.stem.replace('_', ' ')}",
        "description": f"U-Net ({classes}) from napari-fcnseg; outputs class probabilities",
        "documentation": model_card(model, path),
    }


def model_card(model: SegmentationModel, path: Path) -> str:
    """Return the package's documentation: the model's own card, else a summary."""
    card = path.with_suffix(".md")
    if card.is_file():
        return card.read_text(encoding="utf-8")
    info = model.info
    lines = [
        f"# {path.stem}",
        "",
        f"A napari-fcnseg U-Net segmenting {', '.join(info.class_names[1:])} (class 0: "
        f"{info.class_names[0]}), {info.in_channels} input channel(s).",
        "",
        "Input: raw intensities; the package scales each channel between its "
        f"{info.normalization.get('low', 1.0)}th and {info.normalization.get('high', 99.8)}th "
        "percentiles, as napari-fcnseg does. Output: class probabilities (softmax).",
        "",
        "Provenance (from the model file):",
        "",
        "```json",
        json.dumps(info.provenance, indent=2, default=str)[:4000],
        "```",
        "",
        "Cite: " + "; ".join(text for text, _, _ in CITATIONS) + ".",
    ]
    return "\n".join(lines) + "\n"


class _WithSoftmax(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.unet = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.unet(x), dim=1)


def _torchscript(v: Any, model: SegmentationModel, example: np.ndarray, path: Path) -> Any:
    """TorchScript weights traced from the model, or ``None`` when it does not trace."""
    try:
        with torch.no_grad():
            traced = torch.jit.trace(_WithSoftmax(model.unet).eval(), torch.from_numpy(example))
        traced.save(str(path))
    except Exception as exc:  # tracing fails in many ways; the state-dict weights remain
        log.warning("the model does not trace (%s): no TorchScript weights in the package", exc)
        return None
    return v.TorchscriptWeightsDescr(
        source=path,
        pytorch_version=v.Version(torch.__version__.split("+")[0]),
        parent="pytorch_state_dict",
    )


def _test_input(image: np.ndarray, channels: int, multiple: int) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] != channels:
        raise InputError(f"the test image has {img.shape[-1]} channels; the model needs {channels}")
    size = min(TEST_SIZE, img.shape[0] // multiple * multiple, img.shape[1] // multiple * multiple)
    if size < multiple:
        raise InputError(f"the test image is smaller than {multiple} px; give a larger one")
    y0, x0 = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return np.ascontiguousarray(img[y0 : y0 + size, x0 : x0 + size])


def _input(v: Any, info: Any, test: Path, multiple: int) -> Any:
    norm = info.normalization
    return v.InputTensorDescr(
        id=v.TensorId("raw"),
        axes=[
            v.BatchAxis(),
            v.ChannelAxis(channel_names=[v.Identifier(f"c{i}") for i in range(info.in_channels)]),
            v.SpaceInputAxis(
                id=v.AxisId("y"), size=v.ParameterizedSize(min=multiple, step=multiple)
            ),
            v.SpaceInputAxis(
                id=v.AxisId("x"), size=v.ParameterizedSize(min=multiple, step=multiple)
            ),
        ],
        test_tensor=v.FileDescr(source=test),
        data=v.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            v.ScaleRangeDescr(
                kwargs=v.ScaleRangeKwargs(
                    axes=[v.AxisId("y"), v.AxisId("x")],
                    min_percentile=float(norm.get("low", 1.0)),
                    max_percentile=float(norm.get("high", 99.8)),
                )
            )
        ],
    )


def _output(v: Any, info: Any, test: Path) -> Any:
    names = [v.Identifier(_identifier(n)) for n in info.class_names]
    return v.OutputTensorDescr(
        id=v.TensorId("probabilities"),
        axes=[
            v.BatchAxis(),
            v.ChannelAxis(channel_names=names),
            v.SpaceOutputAxis(
                id=v.AxisId("y"),
                size=v.SizeReference(tensor_id=v.TensorId("raw"), axis_id=v.AxisId("y")),
            ),
            v.SpaceOutputAxis(
                id=v.AxisId("x"),
                size=v.SizeReference(tensor_id=v.TensorId("raw"), axis_id=v.AxisId("x")),
            ),
        ],
        test_tensor=v.FileDescr(source=test),
        data=v.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )


def _identifier(name: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "class"
    return text if text[0].isalpha() else f"c_{text}"


def _our_metadata(model: SegmentationModel) -> dict[str, Any]:
    info = model.info
    return json.loads(
        json.dumps(
            {
                "class_names": info.class_names,
                "normalization": info.normalization,
                "scale": info.scale,
                "crf": info.crf,
                "architecture": info.architecture,
                "model_file": ATTACHMENT,
            }
        )
    )


def _cover(raw: np.ndarray, probabilities: np.ndarray, path: Path) -> None:
    """Image beside it the foreground probability as a cyan overlay (a 2:1 PNG)."""
    from skimage import io as skio

    img = raw[..., :3] if raw.shape[-1] >= 3 else np.repeat(raw[..., :1], 3, axis=-1)
    lo, hi = np.percentile(img, (1, 99.8))
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    fg = 1.0 - probabilities[0]
    overlay = img * (1 - 0.5 * fg[..., None]) + 0.5 * fg[..., None] * np.array([0.0, 0.9, 1.0])
    skio.imsave(
        path, (np.concatenate([img, overlay], axis=1) * 255).astype(np.uint8), check_contrast=False
    )
