"""CrfRnn: agreement with an exact dense CRF, mean-field properties, gradients, checkpoints."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import numpy as np
import pytest
import torch

from napari_fcnseg.model.crf_rnn import CrfRnn, auto_downsample, scale_intensities

SMALL = {"spatial_sigma": 3.0, "bilateral_spatial_sigma": 10.0, "bilateral_intensity_sigma": 13.0}


def _two_region_image(shape: tuple[int, ...], channels: int = 3, seed: int = 0) -> torch.Tensor:
    """(C, *shape) 0-255 image: a dark left part, a bright right part, mild noise."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.full((channels, *shape), 60.0)
    image[..., shape[-1] // 2 :] = 180.0
    return (image + 8 * torch.randn(image.shape, generator=gen)).clamp(0, 255)


def _noisy_logits(image: torch.Tensor, num_classes: int = 2, seed: int = 1) -> torch.Tensor:
    """(K, *spatial) logits that favour the true region label, with heavy per-pixel noise."""
    gen = torch.Generator().manual_seed(seed)
    truth = (image[0] > 120).long()
    logits = 1.5 * torch.nn.functional.one_hot(truth, num_classes).movedim(-1, 0).float()
    return logits + 1.2 * torch.randn(logits.shape, generator=gen)


def _run(layer: CrfRnn, logits: torch.Tensor, image: torch.Tensor, **kw: object) -> torch.Tensor:
    return layer(logits[None], image[None], **kw)[0].softmax(0)


def test_matches_brute_force_dense_crf(brute_force_crf: Callable[..., list[torch.Tensor]]) -> None:
    image = _two_region_image((24, 28))
    logits = _noisy_logits(image)
    layer = CrfRnn(2, 5, normalize_image=False, **SMALL).double()
    q = _run(layer, logits.double(), image.double())
    expected = brute_force_crf(logits, image, iterations=5, **SMALL)[-1]
    assert (q.argmax(0) == expected.argmax(0)).float().mean() >= 0.98
    assert (q - expected).abs().mean() < 0.02


def test_3d_anisotropic_matches_brute_force(
    brute_force_crf: Callable[..., list[torch.Tensor]],
) -> None:
    image = _two_region_image((4, 12, 14), channels=1)
    logits = _noisy_logits(image, num_classes=3)
    spacing = (2.5, 1.0, 1.0)
    layer = CrfRnn(3, 4, normalize_image=False, **SMALL).double()
    q = _run(layer, logits.double(), image.double(), spacing=spacing)
    expected = brute_force_crf(logits, image, iterations=4, spacing=spacing, **SMALL)[-1]
    assert q.shape == logits.shape
    assert (q.argmax(0) == expected.argmax(0)).float().mean() >= 0.97
    assert (q - expected).abs().mean() < 0.03


def test_far_apart_slices_behave_like_2d_crfs() -> None:
    image = _two_region_image((3, 20, 22))
    logits = _noisy_logits(image)
    layer = CrfRnn(2, 3, normalize_image=False, **SMALL)
    volume = _run(layer, logits, image, spacing=(1e4, 1.0, 1.0))
    for z in range(3):
        # Same model; the 3D lattice (one more feature) approximates it slightly differently.
        planar = _run(layer, logits[:, z], image[:, z])
        assert torch.allclose(volume[:, z], planar, atol=0.01)
        assert torch.equal(volume[:, z].argmax(0), planar.argmax(0))


def test_zero_weights_return_softmax_of_logits() -> None:
    image = _two_region_image((16, 18))
    logits = _noisy_logits(image, num_classes=4)
    layer = CrfRnn(4, 5, spatial_weight=0.0, bilateral_weight=0.0)
    assert torch.allclose(_run(layer, logits, image), logits.softmax(0), atol=1e-6)


def test_zero_iterations_return_softmax_of_logits() -> None:
    image = _two_region_image((16, 18))
    logits = _noisy_logits(image)
    assert torch.allclose(_run(CrfRnn(2, 0), logits, image), logits.softmax(0))


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_q_is_a_distribution(num_classes: int) -> None:
    image = _two_region_image((30, 33))
    q = _run(CrfRnn(num_classes, 5), _noisy_logits(image, num_classes), image)
    assert torch.allclose(q.sum(0), torch.ones(30, 33), atol=1e-5)
    assert q.min() >= 0 and q.max() <= 1


def test_permuting_labels_permutes_the_output() -> None:
    image = _two_region_image((20, 24))
    logits = _noisy_logits(image, num_classes=3)
    layer = CrfRnn(3, 5, normalize_image=False, **SMALL)
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(
        _run(layer, logits[perm], image), _run(layer, logits, image)[perm], atol=1e-5
    )


def test_free_energy_decreases_over_iterations(
    brute_force_kernels: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    free_energy: Callable[..., float],
) -> None:
    image = _two_region_image((24, 28))
    logits = _noisy_logits(image)
    layer = CrfRnn(2, 6, normalize_image=False, **SMALL).double()
    steps = layer.mean_field(logits.double(), image.double())
    qs = [logits.double().softmax(0), *steps]
    ks, kb = brute_force_kernels(image, **SMALL)
    weighted = 3.0 * ks + 10.0 * kb
    energies = [free_energy(q, logits, weighted) for q in qs]
    assert all(b < a for a, b in itertools.pairwise(energies)), energies
    assert energies[-1] < energies[0] - 1.0


def test_speckle_on_a_flat_image_is_removed() -> None:
    gen = torch.Generator().manual_seed(3)
    image = torch.full((3, 64, 64), 100.0)
    speckle = torch.rand(64, 64, generator=gen) < 0.03
    logits = torch.stack([torch.full((64, 64), 1.0), torch.zeros(64, 64)])
    logits[1, speckle] = 2.5  # confidently wrong, isolated pixels
    q = _run(CrfRnn(2, 5), logits, image)
    assert logits.argmax(0).sum() == speckle.sum() > 50
    assert q.argmax(0).sum() == 0


def test_bilateral_kernel_keeps_an_intensity_edge() -> None:
    # Left half is class 0, right half class 1 in the image; unaries are uninformative on a
    # band in the middle of the right half: the bilateral kernel fills it from its own side.
    image = _two_region_image((40, 60), channels=1)
    logits = torch.zeros(2, 40, 60)
    logits[0, :, :25] = 2.0
    logits[1, :, 35:] = 2.0
    q = _run(CrfRnn(2, 5, **SMALL), logits, image)
    assert (q.argmax(0)[:, :30] == 0).all() and (q.argmax(0)[:, 30:] == 1).all()


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_any_number_of_channels(channels: int) -> None:
    image = _two_region_image((26, 30), channels=channels)
    logits = _noisy_logits(image)
    q = _run(CrfRnn(2, 5, **SMALL), logits, image)
    truth = (image[0] > 120).long()
    assert (q.argmax(0) == truth).float().mean() > (logits.argmax(0) == truth).float().mean()


def test_stack_with_default_bandwidths_and_anisotropic_spacing() -> None:
    image = _two_region_image((6, 48, 52))
    logits = _noisy_logits(image)
    q = _run(CrfRnn(2, 5), logits, image, spacing=(4.0, 1.0, 1.0))
    truth = (image[0] > 120).long()
    assert q.shape == logits.shape
    assert (q.argmax(0) == truth).float().mean() > 0.99


def test_gradcheck_through_the_layer() -> None:
    torch.manual_seed(0)
    image = _two_region_image((5, 6)).double()
    layer = CrfRnn(
        2,
        2,
        normalize_image=False,
        spatial_sigma=1.0,
        bilateral_spatial_sigma=3.0,
        bilateral_intensity_sigma=40.0,
    ).double()
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())
    logits = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)

    def run(lg: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(
            layer, dict(zip(names, ps, strict=True)), (lg, image[None])
        )
        return out.softmax(1)

    assert torch.autograd.gradcheck(run, (logits, *params))


def test_gradients_reach_kernel_weights_and_compatibility() -> None:
    image = _two_region_image((20, 24))
    logits = _noisy_logits(image, num_classes=3).requires_grad_()
    layer = CrfRnn(3, 3, **SMALL)
    target = (image[0] > 120).long()
    loss = torch.nn.functional.cross_entropy(layer(logits[None], image[None]), target[None])
    loss.backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_config_rebuilds_the_layer_from_a_state_dict() -> None:
    layer = CrfRnn(3, 4, spatial_sigma=2.0, bilateral_downsample=2)
    with torch.no_grad():
        layer.compatibility.add_(0.1 * torch.randn(3, 3))
    config = json.loads(json.dumps(layer.config()))
    rebuilt = CrfRnn.from_config(config)
    rebuilt.load_state_dict(layer.state_dict())
    image = _two_region_image((20, 22))
    logits = _noisy_logits(image, num_classes=3)
    assert torch.equal(_run(layer, logits, image), _run(rebuilt, logits, image))
    assert set(layer.state_dict()) == {"spatial_weights", "bilateral_weights", "compatibility"}


def test_batch_is_processed_image_by_image() -> None:
    images = torch.stack([_two_region_image((18, 20), seed=s) for s in (0, 1)])
    logits = torch.stack([_noisy_logits(images[i], seed=i) for i in (0, 1)])
    layer = CrfRnn(2, 3, **SMALL)
    batch = layer(logits, images)
    for i in (0, 1):
        assert torch.allclose(batch[i], layer(logits[i : i + 1], images[i : i + 1])[0])


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        CrfRnn(1)
    with pytest.raises(ValueError, match="spatial_sigma"):
        CrfRnn(2, spatial_sigma=0)
    layer = CrfRnn(2)
    with pytest.raises(ValueError, match="spatial axes"):
        layer(torch.zeros(2, 5, 5), torch.zeros(1, 5, 5))
    with pytest.raises(ValueError, match="spacing"):
        layer(torch.zeros(1, 2, 5, 5), torch.zeros(1, 1, 5, 5), spacing=(1.0, 1.0, 1.0))


def test_scale_intensities_maps_percentiles_to_0_255() -> None:
    x = torch.linspace(0, 1000, 10001).view(1, 1, -1).repeat(2, 1, 1)
    x[1] = 7.0  # a constant channel carries no information
    y = scale_intensities(x)
    assert float(y[0].min()) == 0 and float(y[0].max()) == 255
    assert float(y[0, 0, 5000]) == pytest.approx(127.5, abs=0.5)
    assert float(y[1].abs().max()) == 0
    as_int = scale_intensities((x[:1] * 10).round().to(torch.int32))
    assert torch.allclose(as_int, y[:1], atol=1e-3)


@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [(np.uint8, 0, 256), (np.int8, -128, 128), (np.int16, -900, 3000), (np.uint16, 0, 65536),
     (np.int32, -5, 70000), (np.uint32, 0, 2**32)],
)  # fmt: skip
def test_integer_images_get_exact_percentiles(dtype, low, high) -> None:
    """The histogram path gives torch.quantile's percentiles, exactly."""
    from napari_fcnseg.model.crf_rnn import scale_channels_last

    rng = np.random.default_rng(0)
    image = rng.integers(low, high, (61, 47, 2), dtype=np.int64).astype(dtype)
    image[0, 0] = [low, high - 1]  # the extremes, so the range is the whole type's
    scaled = scale_channels_last(image, 2)
    reference = scale_intensities(torch.from_numpy(np.moveaxis(image, -1, 0).astype(np.float64)))
    assert scaled.dtype == torch.float32 and scaled.shape == (2, 61, 47)
    torch.testing.assert_close(scaled, reference.float(), atol=1e-3, rtol=0)
    flat = scale_channels_last(np.full((5, 5), 9, dtype), 2)  # one value: 0, as for floats
    assert float(flat.abs().max()) == 0


def test_auto_downsample() -> None:
    assert [auto_downsample(s) for s in (3, 19.9, 20, 59.9, 60, 80, 100, 160, 200)] == [
        1,
        1,
        2,
        2,
        3,
        4,
        4,
        4,
        5,
    ]
    # Small slices take the full-resolution lattice below 40 px (fast, and closer to pydensecrf).
    assert [auto_downsample(s, 96 * 112) for s in (20, 39.9, 80)] == [1, 1, 2]
    assert auto_downsample(20, 256 * 256) == 2
