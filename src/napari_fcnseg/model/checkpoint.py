"""Self-describing model files.

A model file is a `safetensors <https://github.com/huggingface/safetensors>`_ file: tensors
only, so loading it can never execute code. Its metadata holds, as JSON under the key
``napari_fcnseg``, everything needed to use the weights: the architecture and its arguments,
the class names, the channels the network expects, the intensity normalisation and the
provenance (when, from what, from which parent model). :func:`load_model` rebuilds the network
from that alone.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import InputError, ModelFileError
from ..io.atomic import atomic_output
from .package import extracted_model, foreign, is_bioimageio_package, is_our_package
from .scale import check_scale
from .unet import UNet

#: Newest model-file format written and read. Version 2 adds ``scale``; a model at scale 1 is
#: still written as version 1, so that older napari-fcnseg releases keep reading it.
FORMAT_VERSION = 2
_FIRST_VERSION = 1
METADATA_KEY = "napari_fcnseg"
MODEL_SUFFIX = ".safetensors"

DEFAULT_NORMALIZATION: dict[str, Any] = {"method": "percentile", "low": 1.0, "high": 99.8}


@dataclass
class ModelInfo:
    """Everything a model file says about its network besides the weights.

    Attributes
    ----------
    class_names
        One name per output class; index 0 is the background.
    in_channels
        Image channels the network expects.
    architecture
        ``{"name": "unet", **UNet.config()}``.
    normalization
        How intensities are scaled before the network, e.g. percentile bounds.
    provenance
        Free-form record of how the model was made (date, data, steps, parent model, version).
    crf
        Configuration of a trained CRF-as-RNN layer stored with the network, or ``None``.
    scale
        Factor images are resized by before the network (0.5: half size along Y and X); the
        probabilities are resized back to the image's size (:mod:`..core.rescale`).
    fill_holes
        The objects are solid (egg chambers): labels made from this model's probabilities have
        the holes of their foreground filled (:mod:`..core.holes`) unless the user says not to.
    format_version
        Version of this file layout.
    """

    class_names: list[str]
    in_channels: int
    architecture: dict[str, Any]
    normalization: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_NORMALIZATION))
    provenance: dict[str, Any] = field(default_factory=dict)
    crf: dict[str, Any] | None = None
    scale: float = 1.0
    fill_holes: bool = False
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        """Number of output classes, background included."""
        return len(self.class_names)

    def to_json(self) -> str:
        """Serialise to JSON text (format 1, without ``scale``, when the scale is 1).

        ``fill_holes`` is written only when true: older releases ignore it (they label without
        filling), and files of models without it stay as they were.
        """
        raw = asdict(self)
        if not self.fill_holes:
            del raw["fill_holes"]
        if self.scale == 1.0:
            del raw["scale"]
            raw["format_version"] = _FIRST_VERSION
        else:
            raw["format_version"] = FORMAT_VERSION
        return json.dumps(raw, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model file") -> ModelInfo:
        """Parse JSON text written by :meth:`to_json`, checking its version and fields."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{source}: its metadata is not valid JSON ({exc})") from None
        version = raw.get("format_version")
        if not isinstance(version, int):
            raise ModelFileError(f"{source}: its metadata has no format_version")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{source} uses model-file format {version}, newer than this napari-fcnseg "
                f"understands ({FORMAT_VERSION}); upgrade napari-fcnseg to use it"
            )
        known = set(cls.__dataclass_fields__)
        missing = {"class_names", "in_channels", "architecture"} - set(raw)
        if missing:
            raise ModelFileError(f"{source}: its metadata lacks {', '.join(sorted(missing))}")
        info = cls(**{key: value for key, value in raw.items() if key in known})
        try:
            info.scale = check_scale(info.scale)
        except InputError as exc:
            raise ModelFileError(f"{source}: {exc}") from None
        if not isinstance(info.fill_holes, bool):
            raise ModelFileError(f"{source}: its fill_holes is {info.fill_holes!r}, not true/false")
        info.format_version = FORMAT_VERSION
        return info


class SegmentationModel(nn.Module):
    """A U-Net with the description of what it segments.

    Calling it maps a batch (N, C, H, W) of normalised images to class logits
    (N, K, H, W). ``info`` carries class names, channels and normalisation.
    """

    def __init__(self, info: ModelInfo):
        super().__init__()
        arch = dict(info.architecture)
        name = arch.pop("name", "unet")
        if name != "unet":
            raise ModelFileError(f"unknown architecture {name!r} in model file; expected 'unet'")
        try:
            self.unet = UNet(**arch)
        except TypeError as exc:
            raise ModelFileError(f"the model file's U-Net arguments are invalid: {exc}") from None
        if self.unet.num_classes != info.num_classes or self.unet.in_channels != info.in_channels:
            raise ModelFileError(
                "the model file is inconsistent: the U-Net has "
                f"{self.unet.in_channels} channel(s) and {self.unet.num_classes} classes but the "
                f"metadata names {info.in_channels} channel(s) and {info.num_classes} classes"
            )
        self.info = info
        if info.crf:
            from .crf_rnn import CrfRnn

            try:
                self.crf = CrfRnn.from_config(dict(info.crf))
            except (TypeError, ValueError) as exc:
                raise ModelFileError(f"the model file's CRF settings are invalid: {exc}") from None

    @classmethod
    def create(
        cls,
        class_names: list[str],
        in_channels: int = 3,
        *,
        depth: int = 4,
        base_features: int = 16,
        norm: str = "batch",
        dropout: float = 0.0,
        normalization: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> SegmentationModel:
        """Build a new, untrained model."""
        architecture = {
            "name": "unet",
            "in_channels": in_channels,
            "num_classes": len(class_names),
            "depth": depth,
            "base_features": base_features,
            "norm": norm,
            "dropout": dropout,
        }
        info = ModelInfo(
            class_names=list(class_names),
            in_channels=in_channels,
            architecture=architecture,
            normalization=dict(normalization or DEFAULT_NORMALIZATION),
            provenance=dict(provenance or {}),
        )
        return cls(info)

    @property
    def required_multiple(self) -> int:
        """Tile height and width must be multiples of this."""
        return self.unet.required_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a normalised batch."""
        return self.unet(x)


def save_model(
    model: SegmentationModel, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write ``model`` to a ``.safetensors`` file atomically and return its path."""
    path = Path(path)
    if path.suffix != MODEL_SUFFIX:
        path = path.with_name(path.name + MODEL_SUFFIX)
    info = model.info
    info.provenance.setdefault("saved", _dt.datetime.now(_dt.UTC).isoformat())
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic_output(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: info.to_json()})
    return path


def read_model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Read only the description of a model file (fast; no weights are loaded).

    A bioimage.io package exported by napari-fcnseg (``.zip``) is read through the model
    file it carries (:mod:`.package`); another tool's package through its description
    (:mod:`.foreign`; nothing from it runs).
    """
    if is_bioimageio_package(path):
        if not is_our_package(path):
            info: ModelInfo = foreign("describe")(path)
            return info
        with extracted_model(path) as inner:
            return read_model_info(inner)
    path = _check_model_path(path)
    header = _read_safetensors_header(path)
    metadata = header.get("__metadata__") or {}
    if METADATA_KEY not in metadata:
        raise ModelFileError(
            f"{path} is a safetensors file but not a napari-fcnseg model (no "
            f"'{METADATA_KEY}' metadata); train or export a model with fcnseg"
        )
    return ModelInfo.from_json(metadata[METADATA_KEY], source=str(path))


def load_model(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    trust_model_code: bool = False,
) -> SegmentationModel:
    """Rebuild a model from its file, in eval mode, on ``device``.

    Only tensors and JSON are read: no code from the file is ever executed. Pickled PyTorch
    files (``.pt``/``.pth``) are refused. Our bioimage.io packages (``.zip``) load through the
    model file they carry. Other tools' packages run through ``bioimageio.core``
    (:mod:`.foreign`): ONNX weights always, weights that run the package's code (TorchScript,
    PyTorch state dicts) only with ``trust_model_code``.

    Raises
    ------
    ModelFileError
        If the file is missing, not a safetensors model, truncated, corrupt or from a newer
        version of the format; :class:`~.foreign.UntrustedModelError` (a subclass) for a
        package that needs ``trust_model_code``.
    """
    if is_bioimageio_package(path):
        if not is_our_package(path):
            model: SegmentationModel = foreign("load")(path, trust_model_code=trust_model_code)
            return model
        with extracted_model(path) as inner:
            return load_model(inner, device)
    info = read_model_info(path)
    model = SegmentationModel(info)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{path} is truncated or corrupt and cannot be loaded ({exc})"
        ) from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelFileError(
            f"{path}: weights do not match the described network ({first})"
        ) from None
    return model.to(torch.device(device) if isinstance(device, str) else device).eval()


_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")


def _check_model_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} not found; check the path or train one first")
    return path


def _read_safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        start = handle.read(9)
        # A safetensors file is an 8-byte header length then a JSON header starting with "{".
        # Only when that is absent is the file checked for pickle/zip magic (a header length can
        # itself start with byte 0x80).
        if start[8:9] != b"{" and start.startswith(_PICKLE_MAGIC):
            raise ModelFileError(
                f"{path} is a pickled PyTorch file; napari-fcnseg refuses pickles because loading "
                "them can run arbitrary code. Use a .safetensors model written by fcnseg."
            )
        start = start[:8]
        handle.seek(8)
        if len(start) < 8:
            raise ModelFileError(f"{path} is empty or truncated: not a model file")
        size = int.from_bytes(start, "little")
        file_size = path.stat().st_size
        if size <= 0 or size > min(file_size - 8, 100_000_000):
            raise ModelFileError(
                f"{path} is not a safetensors model file (or is truncated); "
                "use a .safetensors model written by fcnseg"
            )
        raw = handle.read(size)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{path} is corrupt: its header is not readable") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} is corrupt: unexpected header")
    return header
