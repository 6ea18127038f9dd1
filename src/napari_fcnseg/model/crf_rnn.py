"""CRF-as-RNN: mean-field inference of a fully connected CRF as a trainable torch layer.

The model is the dense CRF of Krähenbühl & Koltun (2011) with two Gaussian edge potentials,

* a spatial ("smoothness") kernel ``exp(-|p_i - p_j|^2 / 2 s_xy^2)``, filtered exactly with a
  separable Gaussian (:mod:`.gaussian_filter`), and
* a bilateral ("appearance") kernel ``exp(-|p_i - p_j|^2 / 2 s_bxy^2 - |I_i - I_j|^2 / 2 s_I^2)``,
  filtered in O(N) with a permutohedral lattice (:mod:`.permutohedral`),

both normalised symmetrically (``D^-1/2 K D^-1/2``, pydensecrf's ``NORMALIZE_SYMMETRIC``). Its
T mean-field steps are unrolled as in Zheng et al. (2015), "Conditional Random Fields as Recurrent
Neural Networks"::

    Q = softmax(logits)
    repeat T times:
        pairwise = mu @ (W_s @ K~_s Q + W_b @ K~_b Q)
        Q = softmax(logits - pairwise)

``W_s``, ``W_b`` (label x label kernel weights) and the compatibility ``mu`` are learnable and start
as the Potts model of pydensecrf (``W = w I``, ``mu = -I``: ``Q = softmax(logits + w K~Q)``), so an
untrained layer reproduces pydensecrf with the same parameters. Bandwidths are fixed, as in the
paper. Positions are in physical units: with ``spacing=(z, y, x)`` the kernels are anisotropic.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .gaussian_filter import SpatialGaussianKernel
from .permutohedral import BilateralKernel

logger = logging.getLogger(__name__)

#: The bilateral lattice is built on blocks of ``sigma // AUTO_DOWNSAMPLE_RATIO`` pixels, and in
#: slices of at least ``BLOCKS_OF_TWO_MIN_PIXELS`` of at least 2 pixels from
#: ``BLOCKS_OF_TWO_FROM`` pixels on and of ``sigma // WIDE_BLOCKS_RATIO`` (at most
#: ``WIDE_BLOCKS_MAX``) for wider kernels, so 2 for 20-59 px and 4 for 80 px. Blocks of a
#: twentieth of the bandwidth or less agree with pydensecrf on real slices at least as closely
#: as blocks of 2 at 20 px do, at a fraction of the full-resolution lattice's time; beyond 4
#: the full-resolution work (the spatial kernel, the upsampling) dominates and little is gained
#: (benchmarks/README.md, "Refine with CRF"). Small images (test crops) keep finer blocks: the
#: full-resolution lattice refines them in milliseconds anyway, and agrees better there.
AUTO_DOWNSAMPLE_RATIO = 40.0
BLOCKS_OF_TWO_FROM = 20.0
BLOCKS_OF_TWO_MIN_PIXELS = 256 * 256
WIDE_BLOCKS_RATIO = 20.0
WIDE_BLOCKS_MAX = 4
#: Percentiles of every channel mapped to 0 and 255 by :func:`scale_intensities`.
PERCENTILES = (0.5, 99.5)
_QUANTILE_SAMPLES = 1 << 20
#: Integer images whose values span at most this many get exact percentiles from a histogram.
_HISTOGRAM_MAX_BINS = 1 << 22
#: How integer images travel to torch: as they are, or in the next larger type torch has.
_TORCH_INTEGERS = {
    np.dtype(a): np.dtype(b)
    for a, b in [
        (np.uint8, np.uint8),
        (np.int8, np.int8),
        (np.int16, np.int16),
        (np.uint16, np.int32),
        (np.int32, np.int32),
        (np.uint32, np.int64),
        (np.int64, np.int64),
    ]
}
#: Probabilities are clipped to [MIN_PROBABILITY, 1] before the unary ``-log(p)`` is taken
#: (pydensecrf's ``unary_from_softmax`` uses the same 1e-5).
MIN_PROBABILITY = 1e-5


def scale_intensities(image: Tensor, percentiles: tuple[float, float] = PERCENTILES) -> Tensor:
    """Map each channel's low-high percentile range linearly to 0-255 and clip to it.

    The bilateral bandwidth (``srgb``: 13 in :class:`CrfRnn`, 8 in ``refine_with_crf``) is then
    in the units of an 8-bit image whatever the input's dtype and range. A channel with a single
    value becomes 0.

    Parameters
    ----------
    image
        ``(C, *spatial)`` tensor.
    percentiles
        Low and high percentile, in percent.

    Returns
    -------
    Tensor
        Same shape, floating point, values in [0, 255].
    """
    x = image if image.is_floating_point() else image.float()
    lo, hi = _percentiles(image.reshape(image.shape[0], -1), percentiles, x.dtype)
    span = hi - lo
    scale = torch.where(span > 0, 255.0 / span.clamp_min(1e-30), torch.zeros_like(span))
    shape = (-1,) + (1,) * (x.ndim - 1)
    return ((x - lo.view(shape)) * scale.view(shape)).clamp_(0.0, 255.0)


def _percentiles(
    flat: Tensor, percentiles: tuple[float, float], dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Low and high percentile of every row of ``(C, N)``, interpolated as ``torch.quantile``.

    Integer images (the usual 8- and 16-bit scans) get exact percentiles from a histogram, in
    O(N), where ``torch.quantile`` sorts (several times slower on a megapixel image).
    Floating-point images use ``torch.quantile`` on at most
    about 2^20 evenly strided samples per channel.
    """
    c, n = flat.shape
    if not flat.is_floating_point() and flat.dtype != torch.bool and n > 0:
        if flat.dtype == torch.uint8:  # no pass needed for the range
            low, high = 0, 255
        else:
            extremes = torch.aminmax(flat)
            low, high = int(extremes.min), int(extremes.max)
        bins = high - low + 1
        if bins <= _HISTOGRAM_MAX_BINS:
            rows = flat if low == 0 else flat.to(torch.int32 if bins < 2**31 else torch.int64) - low
            counts = torch.stack([torch.bincount(row, minlength=bins) for row in rows])
            cumulative = counts.cumsum(1)
            bounds = []
            for p in percentiles:
                position = p / 100.0 * (n - 1)
                below = math.floor(position)
                ranks = torch.tensor([[below, min(below + 1, n - 1)]], device=flat.device)
                # Value of the sorted element of each rank: the first bin whose count passes it.
                values = torch.searchsorted(cumulative, ranks.expand(c, 2).contiguous(), right=True)
                values = values.to(dtype) + low
                bounds.append(values[:, 0] + (position - below) * (values[:, 1] - values[:, 0]))
            return bounds[0], bounds[1]
    x = flat if flat.is_floating_point() else flat.to(dtype)
    step = max(1, n // _QUANTILE_SAMPLES)
    q = torch.tensor([p / 100.0 for p in percentiles], dtype=x.dtype, device=x.device)
    lo, hi = torch.quantile(x[:, ::step], q, dim=1)  # (C,) each
    return lo, hi


def scale_channels_last(
    image: np.ndarray, spatial_ndim: int, device: str | torch.device = "cpu"
) -> Tensor:
    """Return a channels-last image as a ``(C, *spatial)`` float tensor scaled to 0-255.

    ``image`` is ``(*spatial)`` (one channel) or ``(*spatial, C)`` with ``spatial_ndim`` spatial
    axes, any real dtype. It is moved to ``device`` in its own integer type (uint16 as int32;
    so an 8-bit image travels to a GPU as 8 bits) and scaled there with
    :func:`scale_intensities`, whose percentiles are taken over the whole image or stack.
    """
    image = np.asarray(image)
    channels = image if image.ndim > spatial_ndim else image[..., None]
    dtype = _TORCH_INTEGERS.get(channels.dtype, np.dtype(np.float32))
    chw = np.ascontiguousarray(np.moveaxis(channels, -1, 0), dtype=dtype)
    return scale_intensities(torch.from_numpy(chw).to(device)).float()


def probability_logits(probabilities: np.ndarray, device: str | torch.device = "cpu") -> Tensor:
    """CRF unaries ``log(clip(p, MIN_PROBABILITY, 1))`` of ``(K, *spatial)`` probabilities."""
    p = torch.from_numpy(np.ascontiguousarray(probabilities, dtype=np.float32)).to(device)
    return torch.log(p.clamp(MIN_PROBABILITY, 1.0))


def auto_downsample(sigma_pixels: float, slice_pixels: int | None = None) -> int:
    """Block size for the bilateral lattice along an axis whose bandwidth is ``sigma_pixels``.

    ``slice_pixels`` (height x width; ``None``: large) decides whether blocks of 2 pay off.
    """
    blocks = int(sigma_pixels // AUTO_DOWNSAMPLE_RATIO)
    large = slice_pixels is None or slice_pixels >= BLOCKS_OF_TWO_MIN_PIXELS
    if sigma_pixels >= BLOCKS_OF_TWO_FROM and large:
        wide = min(WIDE_BLOCKS_MAX, int(sigma_pixels // WIDE_BLOCKS_RATIO))
        blocks = max(blocks, 2, wide)
    return max(1, blocks)


class CrfRnn(nn.Module):
    """Dense CRF mean-field inference as a recurrent, trainable layer.

    Parameters
    ----------
    num_classes
        Number of labels K (at least 2).
    num_iterations
        Mean-field steps T (5 in training in the paper, 10 at test time).
    spatial_sigma
        Bandwidth of the spatial kernel, in physical units (pixels when no spacing is given);
        pydensecrf's ``addPairwiseGaussian(sxy=...)``.
    spatial_weight
        Initial weight of the spatial kernel (pydensecrf's ``compat``).
    bilateral_spatial_sigma, bilateral_intensity_sigma
        Bandwidths of the bilateral kernel: position (physical units) and intensity (0-255 units
        after :func:`scale_intensities`); pydensecrf's ``sxy`` and ``srgb``.
    bilateral_weight
        Initial weight of the bilateral kernel.
    bilateral_downsample
        Block size (pixels per axis) at which the bilateral lattice is built; ``None`` picks
        ``sigma_pixels // 40`` per axis and at least 1; when a slice has 256 x 256 pixels or
        more, at least 2 from 20 px on and ``sigma_pixels // 20`` up to 4 (so 2 for 20-59 px,
        3 for 60-79, 4 for 80-199). 1 is the full-resolution lattice.
    normalize_image
        Scale every image with :func:`scale_intensities` before building the kernels; turn it
        off when the image already is in 0-255 units.

    Notes
    -----
    ``forward`` returns the logits of the last step (``logits - pairwise``), to be used with a
    cross-entropy loss or turned into probabilities with ``softmax(dim=1)``.
    """

    def __init__(
        self,
        num_classes: int,
        num_iterations: int = 5,
        *,
        spatial_sigma: float = 3.0,
        spatial_weight: float = 3.0,
        bilateral_spatial_sigma: float = 80.0,
        bilateral_intensity_sigma: float = 13.0,
        bilateral_weight: float = 10.0,
        bilateral_downsample: int | None = None,
        normalize_image: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if num_iterations < 0:
            raise ValueError(f"num_iterations must be >= 0, got {num_iterations}")
        for name, value in (
            ("spatial_sigma", spatial_sigma),
            ("bilateral_spatial_sigma", bilateral_spatial_sigma),
            ("bilateral_intensity_sigma", bilateral_intensity_sigma),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.num_classes = int(num_classes)
        self.num_iterations = int(num_iterations)
        self.spatial_sigma = float(spatial_sigma)
        self.bilateral_spatial_sigma = float(bilateral_spatial_sigma)
        self.bilateral_intensity_sigma = float(bilateral_intensity_sigma)
        self.bilateral_downsample = (
            None if bilateral_downsample is None else int(bilateral_downsample)
        )
        self.normalize_image = bool(normalize_image)
        self._init_weights = (float(spatial_weight), float(bilateral_weight))
        eye = torch.eye(self.num_classes)
        self.spatial_weights = nn.Parameter(spatial_weight * eye)
        self.bilateral_weights = nn.Parameter(bilateral_weight * eye)
        self.compatibility = nn.Parameter(-eye.clone())

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments as plain JSON types (to rebuild from a checkpoint)."""
        return {
            "num_classes": self.num_classes,
            "num_iterations": self.num_iterations,
            "spatial_sigma": self.spatial_sigma,
            "spatial_weight": self._init_weights[0],
            "bilateral_spatial_sigma": self.bilateral_spatial_sigma,
            "bilateral_intensity_sigma": self.bilateral_intensity_sigma,
            "bilateral_weight": self._init_weights[1],
            "bilateral_downsample": self.bilateral_downsample,
            "normalize_image": self.normalize_image,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CrfRnn:
        """Build a layer from :meth:`config` (then load its ``state_dict``)."""
        return cls(**config)

    def forward(
        self,
        logits: Tensor,
        image: Tensor,
        spacing: Sequence[float] | None = None,
        num_iterations: int | None = None,
    ) -> Tensor:
        """Run mean-field inference on a batch.

        Parameters
        ----------
        logits
            ``(B, K, *spatial)`` unary scores (``-unary energy``), 2 or 3 spatial axes.
        image
            ``(B, C, *spatial)`` image the bilateral kernel looks at (any number of channels).
        spacing
            Physical size of a pixel along each spatial axis, ``(y, x)`` or ``(z, y, x)``;
            default 1 for every axis.
        num_iterations
            Overrides the number of mean-field steps for this call.

        Returns
        -------
        Tensor
            ``(B, K, *spatial)`` logits after the last step; ``softmax(dim=1)`` gives Q.
        """
        if logits.ndim not in (4, 5) or image.ndim != logits.ndim:
            raise ValueError(
                f"logits (B, K, *spatial) and image (B, C, *spatial) need 2 or 3 spatial axes, "
                f"got {tuple(logits.shape)} and {tuple(image.shape)}"
            )
        outputs = []
        for b in range(logits.shape[0]):
            steps = self.mean_field(logits[b], image[b], spacing, num_iterations)
            while True:
                try:
                    next(steps)
                except StopIteration as stop:
                    outputs.append(stop.value)
                    break
        return torch.stack(outputs)

    def mean_field(
        self,
        logits: Tensor,
        image: Tensor,
        spacing: Sequence[float] | None = None,
        num_iterations: int | None = None,
    ) -> Generator[Tensor, None, Tensor]:
        """Mean-field steps on one image: yield Q after every step, return the final logits.

        Parameters
        ----------
        logits
            ``(K, *spatial)`` unary scores.
        image
            ``(C, *spatial)`` image.
        spacing, num_iterations
            As in :meth:`forward`.
        """
        if logits.shape[0] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got {logits.shape[0]}")
        if tuple(image.shape[1:]) != tuple(logits.shape[1:]):
            raise ValueError(
                f"image {tuple(image.shape)} and logits {tuple(logits.shape)} differ in size"
            )
        spatial, bilateral = self.build_kernels(image.to(logits.dtype), spacing)
        steps = self.num_iterations if num_iterations is None else int(num_iterations)
        out = logits
        q = logits.softmax(0)
        for _ in range(steps):
            out = logits - self.pairwise(q, spatial, bilateral)
            q = out.softmax(0)
            yield q
        return out

    def build_kernels(
        self, image: Tensor, spacing: Sequence[float] | None = None
    ) -> tuple[SpatialGaussianKernel, BilateralKernel]:
        """Build the two normalised kernels of one ``(C, *spatial)`` image (once per image)."""
        nd = image.ndim - 1
        spacing = (1.0,) * nd if spacing is None else tuple(float(s) for s in spacing)
        if len(spacing) != nd or min(spacing) <= 0:
            raise ValueError(f"spacing needs {nd} positive values, got {spacing}")
        if self.normalize_image:
            image = scale_intensities(image)
        spatial = SpatialGaussianKernel(
            image.shape[1:],
            [self.spatial_sigma / s for s in spacing],
            dtype=image.dtype,
            device=image.device,
        )
        sigmas = [self.bilateral_spatial_sigma / s for s in spacing]
        if self.bilateral_downsample is None:
            slice_pixels = int(np.prod(image.shape[-2:]))
            factors = [auto_downsample(s, slice_pixels) for s in sigmas]
        else:
            factors = [max(1, min(self.bilateral_downsample, round(s))) for s in sigmas]
        bilateral = BilateralKernel(image, sigmas, self.bilateral_intensity_sigma, factors)
        return spatial, bilateral

    def pairwise(
        self, q: Tensor, spatial: SpatialGaussianKernel, bilateral: BilateralKernel
    ) -> Tensor:
        """Pairwise term ``mu @ (W_s @ K~_s Q + W_b @ K~_b Q)`` for ``(K, *spatial)`` Q."""
        # One (K x 2K) @ (2K x N) product: [mu W_s, mu W_b] @ [K~_s Q; K~_b Q].
        mu = self.compatibility
        weights = torch.cat([mu @ self.spatial_weights, mu @ self.bilateral_weights], 1)
        weights = weights.to(q.dtype)
        messages = torch.cat([_message(spatial, q), _message(bilateral, q)], 0)
        return (weights @ messages.reshape(messages.shape[0], -1)).view(q.shape)


def _message(kernel: SpatialGaussianKernel | BilateralKernel, q: Tensor) -> Tensor:
    """``K~ Q`` for all labels, filtering K-1 of them: the last is ``K~ 1 - sum(others)``."""
    part = kernel.apply(q[:-1])
    last = kernel.filtered_ones.to(q.dtype) - part.sum(0, keepdim=True)
    return torch.cat([part, last], 0)
