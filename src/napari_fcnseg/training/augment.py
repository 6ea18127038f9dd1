"""Random crops and augmentations for training.

Images here are normalised (C, Y, X) float32 arrays and targets (Y, X) integer labels. Every
geometric transform is applied to both, labels with nearest-neighbour interpolation, so they
stay aligned; intensity transforms touch the image only. All randomness comes from the
``numpy.random.Generator`` passed in, so a seed reproduces a run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from .samples import IGNORE_LABEL, PreparedSample

#: Crops are centred on an annotated pixel when less than this fraction of a sample is annotated
#: (e.g. a few corrected strokes), so that few crops are wasted on unannotated areas.
SPARSE_FRACTION = 0.25
#: :func:`jitter_appearance`: how often and how strongly to blur (sigma in pixels) and to bend
#: the contrast (gamma between exp(-range) and exp(range)).
BLUR_PROBABILITY = 0.3
BLUR_SIGMA = (0.5, 2.0)
GAMMA_PROBABILITY = 0.5
GAMMA_LOG_RANGE = 0.4
#: :func:`noisy_channel`: how often, how much noise (in units of the scaled channel) and its
#: grain (Gaussian sigma in pixels, like JPEG's chroma blocks).
CHANNEL_NOISE_PROBABILITY = 0.5
CHANNEL_NOISE_SIGMA = (0.05, 0.2)
CHANNEL_NOISE_GRAIN = 0.7


def random_crop(
    image: np.ndarray, target: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a ``size`` x ``size`` crop; images smaller than that are padded (0, labels ignored).

    When less than :data:`SPARSE_FRACTION` of the target is annotated, the crop is centred on a
    random annotated pixel; otherwise its position is uniform.
    """
    _, h, w = image.shape
    valid = target != IGNORE_LABEL
    fraction = valid.mean() if valid.size else 0.0
    if 0 < fraction < SPARSE_FRACTION:
        ys, xs = np.nonzero(valid)
        k = rng.integers(len(ys))
        y0 = int(np.clip(ys[k] - size // 2, 0, max(0, h - size)))
        x0 = int(np.clip(xs[k] - size // 2, 0, max(0, w - size)))
    else:
        y0 = int(rng.integers(0, max(0, h - size) + 1))
        x0 = int(rng.integers(0, max(0, w - size) + 1))
    img = image[:, y0 : y0 + size, x0 : x0 + size]
    tgt = target[y0 : y0 + size, x0 : x0 + size]
    ph, pw = size - img.shape[1], size - img.shape[2]
    if ph or pw:
        img = np.pad(img, ((0, 0), (0, ph), (0, pw)))
        tgt = np.pad(tgt, ((0, ph), (0, pw)), constant_values=IGNORE_LABEL)
    return np.ascontiguousarray(img), np.ascontiguousarray(tgt)


def flip_rotate(
    image: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 flips and 90-degree rotations of a square crop, chosen at random."""
    k = int(rng.integers(4))
    image, target = np.rot90(image, k, axes=(1, 2)), np.rot90(target, k)
    if rng.random() < 0.5:
        image, target = image[:, :, ::-1], target[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(target)


def elastic_deform(
    image: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    *,
    sigma: float = 10.0,
    grid: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random deformation as in the U-Net paper.

    Displacements drawn from N(0, ``sigma``) px on a coarse ``grid`` x ``grid`` grid are
    interpolated bicubically to every pixel; the image is resampled linearly, the labels with
    nearest neighbour, both reflected at the border. Done with torch's ``grid_sample``, several
    times faster than ``scipy.ndimage.map_coordinates`` on a CPU, which had made the
    augmentation a large part of each step (benchmarks/README.md, "Training steps").
    """
    _, h, w = image.shape
    coarse = torch.from_numpy(rng.normal(0.0, sigma, size=(1, 2, grid, grid)).astype(np.float32))
    shift = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0]
    ys = torch.arange(h, dtype=torch.float32).view(h, 1) + shift[0]
    xs = torch.arange(w, dtype=torch.float32).view(1, w) + shift[1]
    # grid_sample wants (x, y) in [-1, 1], corners at the outer pixel centres.
    where = torch.stack([2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1], -1)[None]
    source = torch.from_numpy(target.astype(np.float32))[None, None]
    warped, labels = (
        F.grid_sample(x, where, mode=mode, padding_mode="reflection", align_corners=True)
        for x, mode in ((torch.from_numpy(image)[None], "bilinear"), (source, "nearest"))
    )
    return warped[0].numpy(), labels[0, 0].numpy().astype(target.dtype)


def elastic_deform_scipy(
    image: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    *,
    sigma: float = 10.0,
    grid: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`elastic_deform` as first written, with ``scipy.ndimage`` (slower; the recipe's).

    Kept because the bundled model was trained with it: its recipe
    (:mod:`.egg_recipe`, ``TrainConfig.legacy_elastic``) must reproduce it.
    """
    _, h, w = image.shape
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    dy = ndi.zoom(coarse[0], (h / grid, w / grid), order=3, mode="nearest")[:h, :w]
    dx = ndi.zoom(coarse[1], (h / grid, w / grid), order=3, mode="nearest")[:h, :w]
    yy, xx = np.meshgrid(
        np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij"
    )
    coords = np.stack([yy + dy, xx + dx])
    warped = np.stack([ndi.map_coordinates(ch, coords, order=1, mode="reflect") for ch in image])
    labels = ndi.map_coordinates(target, coords, order=0, mode="reflect")
    return warped.astype(np.float32), labels.astype(target.dtype)


def jitter_intensity(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    gain: float = 0.25,
    contrast: float = 0.25,
    offset: float = 0.1,
) -> np.ndarray:
    """Random per-channel gain, contrast around the channel mean, and offset."""
    c = image.shape[0]
    g = np.exp(rng.uniform(-gain, gain, size=(c, 1, 1))).astype(np.float32)
    k = np.exp(rng.uniform(-contrast, contrast, size=(c, 1, 1))).astype(np.float32)
    b = rng.normal(0.0, offset, size=(c, 1, 1)).astype(np.float32)
    mean = image.mean(axis=(1, 2), keepdims=True)
    return ((image - mean) * k + mean) * g + b


def jitter_appearance(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sometimes a Gaussian blur, sometimes a gamma curve: the focus and glow of other scans.

    Slices differ in sharpness and in how far their stain's glow reaches past the tissue edge;
    the labels stay as annotated, so the network learns to put the edge where annotators do
    whatever the blur or the contrast curve (``benchmarks/README.md``, "The correction loop").
    """
    out = image
    if rng.random() < BLUR_PROBABILITY:
        sigma = float(rng.uniform(*BLUR_SIGMA))
        out = np.stack([ndi.gaussian_filter(ch, sigma, mode="reflect") for ch in out])
    if rng.random() < GAMMA_PROBABILITY:
        gamma = float(np.exp(rng.uniform(-GAMMA_LOG_RANGE, GAMMA_LOG_RANGE)))
        out = np.sign(out) * np.abs(out) ** gamma
    return np.ascontiguousarray(out, dtype=np.float32)


def noisy_channel(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sometimes make one channel a faint, noisy copy of itself: a weak stain, stretched.

    Each channel is scaled between its own percentiles, so a channel that holds little of the
    stain (the blue of a red-stained slice, which shows only bleed-through) comes out as its
    structure under strong grainy noise, while in a magenta slice the same channel is a clean
    copy of the red one.
    """
    if rng.random() >= CHANNEL_NOISE_PROBABILITY:
        return image
    out = image.copy()
    c = int(rng.integers(out.shape[0]))
    sigma = float(rng.uniform(*CHANNEL_NOISE_SIGMA))
    noise = ndi.gaussian_filter(rng.normal(0.0, 1.0, out.shape[1:]), CHANNEL_NOISE_GRAIN)
    noise *= sigma / max(float(noise.std()), 1e-6)
    out[c] = out[c] * float(rng.uniform(0.6, 1.0)) + noise.astype(np.float32)
    return out


def permute_channels(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shuffle the channels (stains vary, e.g. between red and magenta)."""
    return np.ascontiguousarray(image[rng.permutation(image.shape[0])])


def augment_crop(
    image: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    *,
    elastic_probability: float = 0.5,
    channel_permutation: bool = True,
    network_channels: int | None = None,
    legacy_elastic: bool = False,
    appearance: bool = False,
    channel_noise: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Flips/rotations, elastic deformation (sometimes), channel order and intensity jitter.

    With ``network_channels`` set, the image holds that many network channels followed by
    extra channels (e.g. the CRF's view of the image): geometric transforms apply to all,
    channel permutation and intensity jitter to the network channels only. ``legacy_elastic``
    uses :func:`elastic_deform_scipy`; ``appearance`` adds :func:`jitter_appearance`,
    ``channel_noise`` :func:`noisy_channel`.
    """
    image, target = flip_rotate(image, target, rng)
    if rng.random() < elastic_probability:
        deform = elastic_deform_scipy if legacy_elastic else elastic_deform
        image, target = deform(image, target, rng)
    c = image.shape[0] if network_channels is None else network_channels
    network, extra = image[:c], image[c:]
    if channel_permutation and c > 1:
        network = permute_channels(network, rng)
    if appearance:
        network = jitter_appearance(network, rng)
    if channel_noise and c > 1:
        network = noisy_channel(network, rng)
    return np.concatenate([jitter_intensity(network, rng), extra]), target


def sample_batch(
    samples: Sequence[PreparedSample],
    batch: int,
    crop: int,
    rng: np.random.Generator,
    *,
    augment: bool = True,
    channel_permutation: bool = True,
    network_channels: int | None = None,
    legacy_elastic: bool = False,
    weights: Sequence[float] | None = None,
    appearance: bool = False,
    channel_noise: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a batch of crops, from samples picked in proportion to their annotated pixels.

    With ``weights``, samples are picked in proportion to those instead (one per sample).
    Returns (N, C, crop, crop) float32 images and (N, crop, crop) int64 targets.
    """
    if weights is None:
        odds = np.array([max(s.valid_pixels, 1) for s in samples], dtype=np.float64)
    else:
        odds = np.asarray(weights, dtype=np.float64)
    picks = rng.choice(len(samples), size=batch, p=odds / odds.sum())
    images, targets = [], []
    for i in picks:
        img, tgt = random_crop(samples[i].image, samples[i].target, crop, rng)
        if augment:
            img, tgt = augment_crop(
                img,
                tgt,
                rng,
                channel_permutation=channel_permutation,
                network_channels=network_channels,
                legacy_elastic=legacy_elastic,
                appearance=appearance,
                channel_noise=channel_noise,
            )
        images.append(img)
        targets.append(tgt)
    return np.stack(images).astype(np.float32), np.stack(targets).astype(np.int64)
