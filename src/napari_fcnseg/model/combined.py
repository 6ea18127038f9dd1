"""A U-Net with a trained CRF-as-RNN layer on top (the end-to-end network of Zheng et al. 2015).

The CRF is attached to a :class:`~.checkpoint.SegmentationModel` as its ``crf`` sub-module, so
``state_dict()`` holds its weights under ``crf.*`` next to the U-Net's and
:func:`~.checkpoint.save_model` writes both to one safetensors file; ``info.crf`` records the
layer's :meth:`~.crf_rnn.CrfRnn.config`. :func:`~.checkpoint.load_model` rebuilds such a file.

The CRF looks at the image scaled to 0-255 per channel over the *whole* image
(:func:`crf_image`), the same scaling :func:`napari_fcnseg.core.crf.refine_with_crf` uses, so a
layer trained on crops of pre-scaled images behaves the same on whole images. The layer is
therefore built with ``normalize_image=False``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ModelFileError
from .checkpoint import SegmentationModel
from .crf_rnn import MIN_PROBABILITY as MIN_PROBABILITY  # re-exported (public name)
from .crf_rnn import CrfRnn, probability_logits, scale_channels_last


def attach_crf(model: SegmentationModel, crf: CrfRnn | None = None, **crf_options) -> CrfRnn:
    """Put a CRF-as-RNN layer on ``model`` (a new Potts-initialised one unless ``crf`` is given).

    ``crf_options`` go to :class:`~.crf_rnn.CrfRnn` (``num_iterations``, ``spatial_sigma``, ...);
    ``normalize_image`` is always false (see the module docstring).
    """
    if crf is None:
        crf_options["normalize_image"] = False
        crf = CrfRnn(model.info.num_classes, **crf_options)
    if crf.num_classes != model.info.num_classes:
        raise ModelFileError(
            f"the CRF layer has {crf.num_classes} classes but the model has "
            f"{model.info.num_classes}; build the CRF for the model's classes"
        )
    model.crf = crf
    model.info.crf = crf.config()
    return crf


def model_crf(model: SegmentationModel) -> CrfRnn | None:
    """Return the CRF layer attached to ``model``, or ``None``."""
    crf = getattr(model, "crf", None)
    return crf if isinstance(crf, CrfRnn) else None


def detach_crf(model: SegmentationModel) -> None:
    """Remove the CRF layer (and its record in ``info``) from ``model``."""
    if model_crf(model) is not None:
        del model.crf
    model.info.crf = None


def crf_image(image_yxc: np.ndarray) -> np.ndarray:
    """(C, Y, X) float32 image for the CRF: each channel's 0.5-99.5 percentiles -> 0-255."""
    return scale_channels_last(image_yxc, 2).numpy()


def refine_with_model_crf(
    model: SegmentationModel,
    image_yxc: np.ndarray,
    probabilities: np.ndarray,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Run ``model``'s trained CRF over the (K, Y, X) probabilities of a whole 2D image."""
    crf = model_crf(model)
    if crf is None:
        raise ModelFileError(
            "this model has no trained CRF layer; train one jointly with the U-Net "
            "(fcnseg's train --crf, TrainConfig.train_crf)"
        )
    dev = torch.device(device) if isinstance(device, str) else device
    crf = crf.to(dev).eval()
    with torch.no_grad():
        img = torch.from_numpy(crf_image(image_yxc)).to(dev)
        logits = crf(probability_logits(probabilities, dev)[None], img[None])
        return torch.softmax(logits[0], dim=0).cpu().numpy()
