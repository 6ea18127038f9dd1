"""The permutohedral lattice and the exact Gaussian filter against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data, transform

from napari_fcnseg.model.gaussian_filter import (
    SpatialGaussianKernel,
    fft_size,
    gaussian_kernel1d,
    separable_gaussian,
)
from napari_fcnseg.model.permutohedral import BilateralKernel, PermutohedralLattice


def _grid(shape: tuple[int, ...], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    axes = [torch.arange(n, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")).reshape(len(shape), -1)


def _astronaut_crop(size: int = 48) -> torch.Tensor:
    """(3, size, size) float64 crop of a natural image, 0-255."""
    img = data.astronaut()[100 : 100 + 2 * size, 180 : 180 + 2 * size]
    img = transform.resize(img, (size, size), anti_aliasing=True) * 255
    return torch.from_numpy(np.moveaxis(img, -1, 0).copy())


def _bilateral_features(image: torch.Tensor, sxy: float, srgb: float) -> torch.Tensor:
    pos = _grid(tuple(image.shape[1:]), image.dtype) / sxy
    return torch.cat([pos, image.reshape(image.shape[0], -1) / srgb]).T.contiguous()


def _exact_gaussian(features: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * torch.cdist(features, features) ** 2) @ values


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


@pytest.fixture
def crop() -> torch.Tensor:
    return _astronaut_crop()


def test_lattice_matches_exact_bilateral_gaussian_on_a_crop(crop: torch.Tensor) -> None:
    features = _bilateral_features(crop, sxy=8.0, srgb=13.0)
    values = torch.rand(
        features.shape[0], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    lattice = PermutohedralLattice(features)
    approx = lattice.filter(values)
    exact = _exact_gaussian(features, values)
    assert _corr(approx, exact) > 0.97
    # Normalised filters (what the CRF uses) agree closely.
    ones = torch.ones_like(values[:, :1])
    normed_approx = approx / lattice.filter(ones)
    normed_exact = exact / _exact_gaussian(features, ones)
    assert (normed_approx - normed_exact).abs().mean() < 0.02


def test_lattice_effective_sigma_is_close_to_nominal() -> None:
    # One impulse in a 1D line of points: the lattice response is a Gaussian of sigma ~ 1.
    n, sxy = 201, 10.0
    features = (torch.arange(n, dtype=torch.float64) / sxy)[:, None]
    values = torch.zeros(n, 1, dtype=torch.float64)
    values[n // 2] = 1
    response = PermutohedralLattice(features).filter(values)[:, 0]
    x = torch.arange(n, dtype=torch.float64) - n // 2
    sigma = float(torch.sqrt((response * x**2).sum() / response.sum())) / sxy
    assert 0.95 < sigma < 1.1


def test_lattice_is_linear_and_handles_duplicate_points() -> None:
    features = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.3, 0.1], [5.0, 5.0]], dtype=torch.float64)
    lattice = PermutohedralLattice(features)
    a = torch.rand(4, 1, dtype=torch.float64)
    b = torch.rand(4, 1, dtype=torch.float64)
    assert torch.allclose(
        lattice.filter(2 * a + 3 * b), 2 * lattice.filter(a) + 3 * lattice.filter(b)
    )
    out = lattice.filter(torch.ones(4, 1, dtype=torch.float64))
    assert out[0] == pytest.approx(float(out[1]))
    assert out[3] < out[0]  # the far point has no neighbours


def test_row_matching_fallback_gives_the_same_lattice(crop: torch.Tensor) -> None:
    features = _bilateral_features(crop[:, :20, :20], sxy=5.0, srgb=20.0)
    packed = PermutohedralLattice(features)
    rows = PermutohedralLattice(features, max_packed_bits=1)
    assert packed.packed and not rows.packed
    assert packed.num_vertices == rows.num_vertices
    values = torch.rand(features.shape[0], 3, dtype=torch.float64)
    assert torch.allclose(packed.filter(values), rows.filter(values))


def test_lattice_many_channels_needs_no_packing_limit() -> None:
    # 2 positions + 8 channels: d = 10, the keys may exceed 62 bits; both paths must work.
    gen = torch.Generator().manual_seed(1)
    features = torch.rand(300, 10, dtype=torch.float64, generator=gen) * 6
    values = torch.rand(300, 1, dtype=torch.float64, generator=gen)
    approx = PermutohedralLattice(features).filter(values)
    assert _corr(approx, _exact_gaussian(features, values)) > 0.9


def test_lattice_gradcheck() -> None:
    gen = torch.Generator().manual_seed(2)
    features = torch.rand(12, 3, dtype=torch.float64, generator=gen) * 2
    lattice = PermutohedralLattice(features)
    values = torch.rand(12, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lattice.filter, (values,))


def test_bilateral_kernel_downsampled_is_close_to_full_resolution() -> None:
    img = data.astronaut()[::4, ::4]  # 128 x 128
    image = torch.from_numpy(np.moveaxis(img, -1, 0).astype(np.float32))
    # A smooth label map, as Q is in a CRF (not a per-pixel colour threshold).
    yy, xx = np.mgrid[:128, :128]
    blob = 1 / (1 + np.exp(-(30 - np.hypot(yy - 50, xx - 60)) / 3))
    q = torch.from_numpy(blob.astype(np.float32))[None]
    full = BilateralKernel(image, [40.0, 40.0], 13.0, [1, 1])
    half = BilateralKernel(image, [40.0, 40.0], 13.0, [2, 2])
    a, b = full.apply(q), half.apply(q)
    assert a.shape == b.shape == q.shape
    # Blocks lose the per-pixel response to fine texture (this image is busy at 128 px); the
    # CRF label agreement with pydensecrf, tested in tests/core, is what the blocks must keep.
    assert _corr(a, b) > 0.9
    assert float((a - b).abs().mean()) < 0.25 * float(a.abs().mean())
    assert half.lattice.num_points == 64 * 64


def test_bilateral_kernel_is_symmetric_normalised() -> None:
    image = _astronaut_crop(24).float()
    kernel = BilateralKernel(image, [6.0, 6.0], 13.0, [1, 1])
    x = torch.rand(1, 24, 24)
    y = torch.rand(1, 24, 24)
    # D^-1/2 K D^-1/2 is (nearly: the lattice's blur order breaks exact symmetry) symmetric.
    assert float((kernel.apply(x) * y).sum()) == pytest.approx(
        float((x * kernel.apply(y)).sum()), rel=0.02
    )


@pytest.mark.parametrize("sigmas", [(3.0, 3.0), (2.0, 0.7), (1.0, 3.0, 2.5), (0.1, 2.0, 2.0)])
def test_separable_gaussian_matches_brute_force(sigmas: tuple[float, ...]) -> None:
    shape = (9, 13, 11)[-len(sigmas) :] if len(sigmas) == 3 else (17, 23)
    x = torch.rand(2, *shape, dtype=torch.float64)
    pos = _grid(shape)
    scaled = pos / torch.tensor(sigmas, dtype=torch.float64)[:, None]
    d2 = torch.cdist(scaled.T, scaled.T) ** 2
    # Axes below MIN_SIGMA are not filtered at all (a delta kernel).
    for axis, s in enumerate(sigmas):
        if s < 0.2:
            same = pos[axis][:, None] == pos[axis][None, :]
            d2 = torch.where(same, d2, torch.inf)
    expected = (torch.exp(-0.5 * d2) @ x.reshape(2, -1).T).T.reshape(x.shape)
    assert torch.allclose(separable_gaussian(x, sigmas), expected, atol=1e-3)


def test_separable_gaussian_matches_conv_and_is_differentiable() -> None:
    x = torch.rand(1, 20, 30, dtype=torch.float64, requires_grad=True)
    k = gaussian_kernel1d(1.5, dtype=torch.float64, device=torch.device("cpu"))
    r = k.numel() // 2
    conv = F.conv2d(x[None], k.view(1, 1, -1, 1), padding=(r, 0))
    conv = F.conv2d(conv, k.view(1, 1, 1, -1), padding=(0, r))[0]
    assert torch.allclose(separable_gaussian(x, [1.5, 1.5]), conv, atol=1e-10)
    small = torch.rand(1, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: separable_gaussian(v, [1.0, 2.0]), (small,))


def test_spatial_kernel_is_symmetric_and_normalised() -> None:
    kernel = SpatialGaussianKernel((40, 45), (3.0, 3.0), dtype=torch.float64)
    x = torch.rand(1, 40, 45, dtype=torch.float64)
    y = torch.rand(1, 40, 45, dtype=torch.float64)
    assert float((kernel.apply(x) * y).sum()) == pytest.approx(float((x * kernel.apply(y)).sum()))
    # Far from the border the normalised kernel of a constant is ~1.
    assert float(kernel.filtered_ones[0, 20, 22]) == pytest.approx(1.0, abs=0.05)


def test_fft_size() -> None:
    assert [fft_size(n) for n in (1, 7, 11, 1036, 523)] == [1, 8, 12, 1080, 540]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_lattice_same_on_cuda(crop: torch.Tensor) -> None:
    features = _bilateral_features(crop, sxy=8.0, srgb=13.0).float()
    values = torch.rand(features.shape[0], 2)
    cpu = PermutohedralLattice(features).filter(values)
    gpu = PermutohedralLattice(features.cuda()).filter(values.cuda()).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)


def test_descending_rank_is_a_stable_sort_with_ties() -> None:
    from napari_fcnseg.model.permutohedral import _descending_rank

    x = torch.randint(0, 3, (500, 6)).float()  # many ties
    order = torch.sort(-x, dim=1, stable=True).indices
    expected = torch.empty_like(order)
    expected.scatter_(1, order, torch.arange(6).expand_as(order).contiguous())
    assert torch.equal(_descending_rank(x), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_and_gather_paths_agree(crop: torch.Tensor, dtype: torch.dtype) -> None:
    # On the CPU, values that need no gradient go through CSR products; with a gradient the
    # same filter takes the gather path. Both compute the same sums.
    kernel = BilateralKernel(crop.to(dtype), [8.0, 8.0], 13.0, [1, 1])
    q = torch.rand(2, 48, 48, dtype=dtype, generator=torch.Generator().manual_seed(3))
    sparse = kernel.apply(q)
    gathered = kernel.apply(q.clone().requires_grad_(True)).detach()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(sparse, gathered, rtol=tol, atol=tol)


def test_neighbour_table_matches_row_wise_matching(crop: torch.Tensor) -> None:
    # The packed path looks up the +1 neighbours and inverts them for the -1 neighbours; the
    # row-wise path (forced by a zero bit budget) looks up both directions independently.
    features = _bilateral_features(crop, 6.0, 13.0)
    packed = PermutohedralLattice(features)
    rows = PermutohedralLattice(features, max_packed_bits=0)
    assert packed.packed and not rows.packed
    assert packed.num_vertices == rows.num_vertices
    m, d1 = packed.num_vertices, packed.dim + 1
    table = packed._neighbours.view(d1, 2, m + 1)[:, :, :m]
    assert int((table < m).sum()) > m  # a connected lattice, not isolated vertices
    for j in range(d1):  # a +1 then a -1 step returns to the vertex
        up, down = table[j, 0], table[j, 1]
        assert torch.equal(down[up[up < m]], torch.arange(m)[up < m])
    values = torch.rand(features.shape[0], 2, dtype=features.dtype)
    assert torch.allclose(packed.filter(values), rows.filter(values), rtol=1e-12, atol=1e-12)
