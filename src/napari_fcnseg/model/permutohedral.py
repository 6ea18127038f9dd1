"""Permutohedral lattice: high-dimensional Gaussian filtering in O(N), built from torch ops.

This is the filter of Adams, Baek & Davis (2010) as used by the dense CRF of Krähenbühl & Koltun
(2011) and by pydensecrf: every point is *splatted* onto the d+1 vertices of the lattice simplex
that contains it (barycentric weights), the lattice values are *blurred* with a [1/2, 1, 1/2]
stencil along each of the d+1 lattice directions, and the result is *sliced* back at the points.
The result approximates ``sum_j exp(-|f_i - f_j|^2 / 2) v_j`` for features ``f`` (already divided
by their bandwidths); its effective standard deviation is 1.00-1.05x the nominal one.

Everything is written with plain tensor operations (sort, ``torch.unique``, ``searchsorted``,
``index_add``, gather), so the same code runs on CPU and CUDA and is differentiable with respect
to the filtered values. The lattice depends only on the features: build it once per image and
call :meth:`PermutohedralLattice.filter` for every mean-field iteration.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

#: Largest number of bits a packed lattice key may use before the slower row-wise fallback.
MAX_PACKED_BITS = 62


class PermutohedralLattice:
    """A permutohedral lattice built from the features of N points.

    Parameters
    ----------
    features
        ``(N, d)`` floating-point tensor: the position of every point in feature space, already
        divided by the kernel bandwidths (so that the kernel is ``exp(-|f_i - f_j|^2 / 2)``).
    max_packed_bits
        Keys are packed into one int64 when they fit in this many bits (the fast path); otherwise
        lattice vertices are matched row-wise. Only tests should need to change it.

    Attributes
    ----------
    num_points
        N, the number of points.
    num_vertices
        M, the number of lattice vertices the points touch.
    weights
        ``(N, d+1)`` barycentric weights of every point in its simplex (splat and slice).
    scale
        Normalisation constant of Adams et al. applied when slicing (the filter of a constant
        is then about constant).
    """

    def __init__(self, features: Tensor, max_packed_bits: int = MAX_PACKED_BITS) -> None:
        if features.ndim != 2 or not features.is_floating_point():
            raise ValueError(f"features must be a floating (N, d) tensor, got {features.shape}")
        n, d = features.shape
        self.num_points = n
        self.dim = d
        self.device = features.device
        with torch.no_grad():
            elevated = _elevate(features.detach())
            rem0, rank = _enclosing_simplex(elevated)
            self.weights = _barycentric(elevated, rem0, rank).to(features.dtype)
            self._build_vertices(rem0, rank, max_packed_bits)
        # Normalisation constant of Adams et al. (the filter of a constant is then ~constant).
        self.scale = 1.0 / (1.0 + 2.0 ** (-d))

    # ----------------------------------------------------------------------------------- build
    def _build_vertices(self, rem0: Tensor, rank: Tensor, max_packed_bits: int) -> None:
        """Find the lattice vertices of every point's simplex and their blur neighbours.

        Vertex ``r`` (0..d) of a point's simplex has coordinates
        ``k_i = rem0_i + r - (d+1) [rank_i > d - r]``, all congruent to ``r`` modulo d+1; a vertex
        is identified by ``r`` and ``q_i = (k_i - r) / (d+1)`` for the first d coordinates (the
        last follows from ``sum(k) = 0``). These are packed into one int64 when they fit.
        """
        n, d1 = rank.shape
        d = d1 - 1
        base = torch.div(rem0[:, :d], d1, rounding_mode="floor")  # q of vertex 0
        # q of any vertex is base or base - 1; neighbours move it by one more either way.
        qmin = base.amin(0) - 2
        qrange = base.amax(0) + 2 - qmin
        bits = math.log2(d1) + float(torch.log2(qrange.double()).sum())
        self.packed = bits <= max_packed_bits
        if self.packed:
            radix = torch.cumprod(torch.cat([qrange.new_ones(1), qrange[:-1]]), 0) * d1
            # key of vertex r: r + sum_i (q_i - qmin_i) radix_i, q_i = base_i - [r >= d+1-rank_i]
            corrections = rank.new_zeros(n, d1 + 1)
            corrections.scatter_add_(1, d1 - rank[:, :d], radix.expand(n, d).contiguous())
            offsets = _cumsum_columns(corrections)[:, :d1]
            packed = ((base - qmin) * radix).sum(1, keepdim=True) - offsets
            packed += torch.arange(d1, device=rank.device)
            keys, inverse, order = _unique_with_order(packed.view(-1))
            self.num_vertices = keys.numel()
            neighbours = _packed_neighbours(keys, radix, d1)  # (d+1, 2, M)
        else:
            logger.debug("lattice keys need %.0f bits: using row-wise matching", bits)
            r = torch.arange(d1, device=rank.device).view(1, d1, 1)
            q = base[:, None, :] - (rank[:, None, :d] > d - r).long()  # (N, d+1, d)
            r_flat = r.view(1, d1).expand(n, d1).reshape(-1)
            rows = torch.cat([r_flat[:, None], q.reshape(-1, d)], 1)
            urows, inverse = torch.unique(rows, dim=0, return_inverse=True)
            self.num_vertices = urows.shape[0]
            uq, ur = urows[:, 1:], urows[:, 0]
            queries = []
            for j in range(d1):
                for sign in (1, -1):
                    nq, nr = _neighbour(uq, ur, j, sign, d1)
                    queries.append(torch.cat([nr[:, None], nq], 1))
            neighbours = _lookup_rows(urows, torch.cat(queries, 0)).view(d1, 2, -1)
            order = torch.argsort(inverse, stable=True)
        self._offsets = inverse.view(n, d1)
        self._order = order
        m = self.num_vertices
        # (d+1, 2 (M+1)): for each direction, the vertex one step one way then the other, for
        # the M vertices and the always-zero row M (whose neighbours are itself), so that a blur
        # step is one gather, one sum and one add over all M+1 rows.
        pairs = torch.cat([neighbours, neighbours.new_full((d1, 2, 1), m)], 2)
        self._neighbours = pairs.reshape(d1, 2 * (m + 1))

    # ---------------------------------------------------------------------------------- filter
    def filter(self, values: Tensor) -> Tensor:
        """Gaussian-filter values defined at the points.

        Parameters
        ----------
        values
            ``(N, C)`` tensor on the lattice's device.

        Returns
        -------
        Tensor
            ``(N, C)``: approximately ``sum_j exp(-|f_i - f_j|^2 / 2) values_j``.
        """
        if values.ndim != 2 or values.shape[0] != self.num_points:
            raise ValueError(f"values must be ({self.num_points}, C), got {tuple(values.shape)}")
        return LatticeFilter(self, self.weights, self.weights * self.scale)(values)

    def splat(self, values: Tensor, weights: Tensor | None = None) -> Tensor:
        """Spread point values onto the lattice vertices: ``(N, C)`` -> ``(M + 1, C)``.

        ``weights`` (default: the barycentric weights) are ``(N, d+1)``: a caller may fold a
        per-point factor into them. The last row is an always-zero vertex that stands for "no
        neighbour".
        """
        w = self.weights.to(values.dtype) if weights is None else weights
        c = values.shape[1]
        src = (w.unsqueeze(-1) * values.unsqueeze(1)).reshape(-1, c)
        out = values.new_zeros(self.num_vertices + 1, c)
        return out.index_add(0, self._offsets.reshape(-1), src)

    def blur(self, lattice_values: Tensor) -> Tensor:
        """Blur lattice values with [1/2, 1, 1/2] along every lattice direction, in order."""
        v = lattice_values
        rows, c = v.shape
        for j in range(self.dim + 1):
            sides = v.index_select(0, self._neighbours[j]).view(2, rows, c)
            v = torch.add(v, sides.sum(0), alpha=0.5)
        return v

    def slice(self, lattice_values: Tensor, weights: Tensor | None = None) -> Tensor:
        """Interpolate lattice values back at the points: ``(M + 1, C)`` -> ``(N, C)``.

        ``weights`` (default: the barycentric weights times the normalisation constant) are
        ``(N, d+1)``, as in :meth:`splat`.
        """
        if weights is None:
            weights = self.weights.to(lattice_values.dtype) * self.scale
        gathered = lattice_values.index_select(0, self._offsets.reshape(-1))
        gathered = gathered.view(self.num_points, self.dim + 1, -1)
        return (gathered * weights.unsqueeze(-1)).sum(1)

    def splat_matrix(self, weights: Tensor) -> Tensor:
        """Return the splat with ``(N, d+1)`` weights as a sparse CSR matrix ``(M + 1, N)``."""
        n, d1, m = self.num_points, self.dim + 1, self.num_vertices
        if not hasattr(self, "_splat_rows"):
            counts = torch.bincount(self._offsets.reshape(-1), minlength=m + 1)
            self._splat_rows = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            self._splat_columns = torch.div(self._order, d1, rounding_mode="floor")
        values = weights.reshape(-1)[self._order]
        return _csr(self._splat_rows, self._splat_columns, values, (m + 1, n))

    def slice_matrix(self, weights: Tensor) -> Tensor:
        """Return the slice with ``(N, d+1)`` weights as a sparse CSR matrix ``(N, M + 1)``."""
        n, d1, m = self.num_points, self.dim + 1, self.num_vertices
        rows = torch.arange(0, n * d1 + 1, d1, device=weights.device)
        return _csr(rows, self._offsets.reshape(-1), weights.reshape(-1), (n, m + 1))


class LatticeFilter:
    """Splat, blur and slice on one lattice with fixed per-point weights.

    ``splat_weights`` and ``slice_weights`` are ``(N, d+1)`` (the barycentric weights, possibly
    times a per-point factor such as a normalisation). On the CPU, values that need no gradient
    (inference) are splatted and sliced as products with sparse CSR matrices built once here:
    ``index_add`` runs on one thread and the gather-and-sum of the slice makes a temporary
    ``(N, d+1, C)`` tensor, where the CSR products use both cores without one
    (``benchmarks/README.md``, "Refine with CRF"). Values that need a gradient, and CUDA, take
    the gather path, whose backward pass is fast (the CSR product's is not).
    """

    def __init__(self, lattice: PermutohedralLattice, splat_weights: Tensor, slice_weights: Tensor):
        self.lattice = lattice
        self.splat_weights = splat_weights
        self.slice_weights = slice_weights
        self._sparse: tuple[Tensor, Tensor] | None = None
        if lattice.device.type == "cpu" and splat_weights.dtype in (torch.float32, torch.float64):
            self._sparse = (
                lattice.splat_matrix(splat_weights.detach()),
                lattice.slice_matrix(slice_weights.detach()),
            )

    def __call__(self, values: Tensor) -> Tensor:
        """Filter ``(N, C)`` values: ``slice(blur(splat(values)))``."""
        lattice = self.lattice
        if self._sparse is not None and not values.requires_grad:
            splat, slice_ = self._sparse
            dtype = splat.dtype
            blurred = lattice.blur(splat @ values.to(dtype))
            return (slice_ @ blurred).to(values.dtype)
        splatted = lattice.splat(values, self.splat_weights.to(values.dtype))
        return lattice.slice(lattice.blur(splatted), self.slice_weights.to(values.dtype))


class BilateralKernel:
    """Symmetrically normalised bilateral kernel ``D^-1/2 K D^-1/2`` of one image.

    ``K(i, j) = exp(-|p_i - p_j|^2 / 2 sxy^2 - |I_i - I_j|^2 / 2 srgb^2)``, filtered with a
    permutohedral lattice that is built once here and reused by :meth:`apply`.

    With ``downsample`` > 1 the lattice is built on block averages of the image (blocks of
    ``downsample`` pixels per axis) and the filtered values are brought back to the pixels by
    joint bilateral upsampling (the nearest blocks, weighted by distance and by intensity
    similarity to the pixel). The spatial bandwidth of this kernel is large (20-80 px), so blocks
    of a few pixels change the result little while the lattice gets that many times fewer points;
    the benchmark and the tests measure the label agreement with pydensecrf.

    Parameters
    ----------
    image
        ``(C, *spatial)`` intensities, already scaled (e.g. 0-255 per channel).
    spatial_sigmas
        Spatial bandwidth along each axis, in pixels (physical sigma / spacing).
    intensity_sigma
        Intensity bandwidth, in the units of ``image``.
    downsample
        Block size along each spatial axis (1 = full resolution).
    """

    def __init__(
        self,
        image: Tensor,
        spatial_sigmas: Sequence[float],
        intensity_sigma: float,
        downsample: Sequence[int],
    ) -> None:
        nd = image.ndim - 1
        if nd not in (2, 3) or len(spatial_sigmas) != nd or len(downsample) != nd:
            raise ValueError("need a (C, *spatial) image with 2 or 3 axes, one sigma/factor each")
        self.shape = tuple(image.shape[1:])
        self.factors = tuple(int(f) for f in downsample)
        small = self._pool(image.detach())
        grids = torch.meshgrid(
            *[
                (torch.arange(n, device=image.device, dtype=image.dtype) * f + (f - 1) / 2) / s
                for n, f, s in zip(small.shape[1:], self.factors, spatial_sigmas, strict=True)
            ],
            indexing="ij",
        )
        positions = torch.stack(grids).reshape(nd, -1)
        colours = small.reshape(small.shape[0], -1) / intensity_sigma
        self.small_shape = tuple(small.shape[1:])
        self.lattice = PermutohedralLattice(torch.cat([positions, colours]).T.contiguous())
        self._corners = self._guided_upsampling(image.detach(), small, intensity_sigma)
        ones = image.new_ones(self.lattice.num_points, 1)
        norm = self.lattice.filter(ones).clamp_min(1e-20).rsqrt()  # D^-1/2, (N, 1)
        # The normalisation folded into the splat and slice weights saves two passes per call.
        weights = self.lattice.weights
        self._filter = LatticeFilter(
            self.lattice, weights * norm, weights * (norm * self.lattice.scale)
        )
        # K~ 1, used to get the last label's message without filtering it (sum of Q is 1).
        self.filtered_ones = self.apply(image.new_ones((1, *self.shape)))

    def apply(self, values: Tensor) -> Tensor:
        """Filter ``(C, *spatial)`` values with the normalised bilateral kernel."""
        c = values.shape[0]
        small = self._pool(values).reshape(c, -1).T
        out = self._filter(small)
        return self._upsample(out.T.reshape(c, *self.small_shape))

    def _pool(self, x: Tensor) -> Tensor:
        if all(f == 1 for f in self.factors):
            return x
        pool = F.avg_pool2d if x.ndim == 3 else F.avg_pool3d
        return pool(x.unsqueeze(0), self.factors, ceil_mode=True).squeeze(0)

    def _guided_upsampling(
        self, image: Tensor, small: Tensor, intensity_sigma: float
    ) -> list[tuple[tuple[slice, ...], Tensor]] | None:
        """Blocks and weights that bring block values back to every pixel.

        Each pixel takes its 2^nd nearest blocks with bilinear weights times the intensity
        kernel ``exp(-|I_pixel - I_block|^2 / 2 srgb^2)`` (joint bilateral upsampling): at an
        edge a pixel listens to the blocks of its own colour, as the full lattice would. A
        corner is a shifted view of the nearest-neighbour enlargement of the (edge-padded) blocks.
        """
        if all(f == 1 for f in self.factors):
            return None
        per_axis = []
        for n, f in zip(self.shape, self.factors, strict=True):
            if f == 1:
                per_axis.append(
                    [(slice(0, n), torch.ones(n, dtype=image.dtype, device=image.device))]
                )
                continue
            x = (torch.arange(n, device=image.device, dtype=image.dtype) + 0.5) / f - 0.5
            t = x - torch.floor(x)
            start = (f + 1) // 2  # the block left of pixel x, in the padded enlargement
            per_axis.append(
                [(slice(start, start + n), 1 - t), (slice(start + f, start + f + n), t)]
            )
        enlarged = self._enlarge(small)
        corners: list[tuple[tuple[slice, ...], Tensor]] = []
        total = torch.zeros_like(image[0])
        for choice in itertools.product(*per_axis):
            view = (slice(None), *(sl for sl, _ in choice))
            weight = _outer([w for _, w in choice])
            dist2 = ((enlarged[view] - image) ** 2).sum(0) / intensity_sigma**2
            # A small bilinear floor keeps pixels whose colour no nearby block has defined.
            weight = weight * (torch.exp(-0.5 * dist2) + 1e-4)
            total = total + weight
            corners.append((view, weight))
        return [(view, weight / total) for view, weight in corners]

    def _enlarge(self, x: Tensor) -> Tensor:
        """Blocks ``(C, *small)`` padded by one edge block and repeated to pixel size."""
        pads: list[int] = []
        for f in reversed(self.factors):
            pads += [1, 1] if f > 1 else [0, 0]
        x = F.pad(x.unsqueeze(0), pads, mode="replicate").squeeze(0)
        c, sizes = x.shape[0], x.shape[1:]
        expanded_shape: list[int] = [c]
        view_shape: list[int] = [c]
        for n, f in zip(sizes, self.factors, strict=True):
            view_shape += [n, 1]
            expanded_shape += [n, f]
        big = x.reshape(view_shape).expand(expanded_shape)
        return big.reshape(c, *(n * f for n, f in zip(sizes, self.factors, strict=True)))

    def _upsample(self, x: Tensor) -> Tensor:
        if self._corners is None:
            return x
        enlarged = self._enlarge(x)
        (view, weight), *others = self._corners
        out = enlarged[view] * weight.to(x.dtype)
        for view, weight in others:
            # In place is safe for autograd: the product above does not need its own output.
            out.addcmul_(enlarged[view], weight.to(x.dtype))
        return out


def _outer(vectors: list[Tensor]) -> Tensor:
    """Outer product of one 1D tensor per axis: ``(n0, n1[, n2])``."""
    nd = len(vectors)
    out = vectors[0].view(-1, *([1] * (nd - 1)))
    for axis, v in enumerate(vectors[1:], start=1):
        shape = [1] * nd
        shape[axis] = -1
        out = out * v.view(shape)
    return out


# --------------------------------------------------------------------------------- helpers
def _elevate(features: Tensor) -> Tensor:
    """Project ``(N, d)`` features onto the plane ``sum(x) = 0`` of R^(d+1), scaled (E p)."""
    n, d = features.shape
    inv_std = math.sqrt(2.0 / 3.0) * (d + 1)
    i = torch.arange(d, device=features.device, dtype=features.dtype)
    scale = inv_std / torch.sqrt((i + 2) * (i + 1))
    cf = features * scale
    # rc[j] = sum_{k >= j} cf[k] for j = 0..d (rc[d] = 0); elevated[j] = rc[j] - j cf[j - 1].
    rc = _cumsum_columns(cf.flip(1), zero_first=True).flip(1)
    shifted = torch.cat([cf.new_zeros(n, 1), (i + 1) * cf], 1)
    return rc - shifted


def _enclosing_simplex(elevated: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest remainder-0 lattice point (``rem0``) and the rank of each coordinate."""
    d1 = elevated.shape[1]
    v = elevated / d1
    up = torch.ceil(v) * d1
    down = torch.floor(v) * d1
    rem0 = torch.where(up - elevated < elevated - down, up, down)
    total = torch.round(rem0.sum(1) / d1).long()
    rank = _descending_rank(elevated - rem0)
    rank = rank + total[:, None]
    rem0 = rem0.long()
    low = rank < 0
    high = rank > d1 - 1
    rank = torch.where(low, rank + d1, torch.where(high, rank - d1, rank))
    rem0 = torch.where(low, rem0 + d1, torch.where(high, rem0 - d1, rem0))
    return rem0, rank


def _descending_rank(x: Tensor) -> Tensor:
    """Position of each value of every row in decreasing order, ties by index (stable sort).

    Counted with one comparison per pair of columns: for rows of a few values this is faster
    than ``torch.sort`` (measured for 262144 x 6: 10 ms against 16 ms on 2 CPU threads; the
    sort kernel took 0.75 ms of a 29 ms CRF on an H100).
    """
    columns = x.unbind(1)
    ranks = []
    for i, xi in enumerate(columns):
        count = torch.zeros(xi.shape, dtype=torch.long, device=x.device)
        for j, xj in enumerate(columns):
            if j != i:
                count += (xj >= xi) if j < i else (xj > xi)
        ranks.append(count)
    return torch.stack(ranks, 1)


def _barycentric(elevated: Tensor, rem0: Tensor, rank: Tensor) -> Tensor:
    """Barycentric weights ``(N, d+1)`` of every point in its simplex."""
    n, d1 = elevated.shape
    d = d1 - 1
    v = (elevated - rem0.to(elevated.dtype)) / d1
    b = elevated.new_zeros(n, d1 + 1)
    b.scatter_add_(1, d - rank, v)
    b.scatter_add_(1, d - rank + 1, -v)
    b[:, 0] += 1.0 + b[:, d1]
    return b[:, :d1]


def _neighbour(q: Tensor, r: Tensor, j: int, sign: int, d1: int) -> tuple[Tensor, Tensor]:
    """Vertex one step along lattice direction ``j`` (sign -1: ``k - 1 + (d+1) e_j``)."""
    d = d1 - 1
    if sign > 0:  # k + 1 - (d+1) e_j
        wrap = (r == d).long()
        nr = torch.where(r == d, torch.zeros_like(r), r + 1)
        nq = q + wrap[:, None]
        if j < d:
            nq = nq.clone()
            nq[:, j] -= 1
    else:  # k - 1 + (d+1) e_j
        wrap = (r == 0).long()
        nr = torch.where(r == 0, torch.full_like(r, d), r - 1)
        nq = q - wrap[:, None]
        if j < d:
            nq = nq.clone()
            nq[:, j] += 1
    return nq, nr


def _cumsum_columns(x: Tensor, zero_first: bool = False) -> Tensor:
    """Return the running sums along the short second axis of ``(N, d)`` (``x.cumsum(1)``).

    Written as d additions of columns: torch's scan kernel along a short innermost axis was
    measured at 1.5 ms for 262144 x 6 on an H100, most of the lattice's build time there.
    With ``zero_first`` the result starts with a column of zeros (``(N, d+1)``).
    """
    total = x.new_zeros(x.shape[0]) if zero_first else x[:, 0]
    columns = [total]
    for k in range(0 if zero_first else 1, x.shape[1]):
        total = total + x[:, k]
        columns.append(total)
    return torch.stack(columns, 1)


def _packed_neighbours(keys: Tensor, radix: Tensor, d1: int) -> Tensor:
    """``(d+1, 2, M)`` index of each vertex's two blur neighbours along each lattice direction.

    A neighbour's key follows from the vertex's key by arithmetic (keys are linear in the
    coordinates, with a margin that keeps neighbours in range): moving by ``+1`` turns
    remainder ``r`` into ``r + 1`` (or 0, carrying ``+1`` into every coordinate, i.e. adding
    ``sum(radix)``) and takes 1 from coordinate ``j`` (when ``j < d``); ``-1`` the reverse.
    One sorted lookup then finds the +1 neighbours (``M`` where a neighbour is not in the
    lattice), and inverting it gives the -1 neighbours.
    """
    d = d1 - 1
    r = keys % d1
    up = torch.where(r == d, keys - r + radix.sum(), keys + 1)
    step = torch.cat([radix, radix.new_zeros(1)]).view(d1, 1)  # coordinate j moves; none for d
    # Only the +1 neighbours are looked up: a -1 step undoes a +1 step, so u = up_j(v) exactly
    # when v = down_j(u), and one scatter inverts the lookup (half the binary searches).
    up_index = _lookup_sorted(keys, (up - step).reshape(-1)).view(d1, -1)  # (d+1, M)
    m = keys.numel()
    down_index = up_index.new_full((d1, m + 1), m)
    down_index.scatter_(1, up_index, torch.arange(m, device=keys.device).expand(d1, m))
    return torch.stack([up_index, down_index[:, :m]], 1)


def _lookup_sorted(keys: Tensor, queries: Tensor) -> Tensor:
    """Index of each query in the sorted ``keys``, or ``len(keys)`` when absent."""
    m = keys.numel()
    pos = torch.searchsorted(keys, queries).clamp_(max=m - 1)
    return torch.where(keys[pos] == queries, pos, torch.full_like(pos, m))


def _lookup_rows(rows: Tensor, queries: Tensor) -> Tensor:
    """Row-wise version of :func:`_lookup_sorted` for keys that do not fit one int64."""
    m = rows.shape[0]
    _, inverse = torch.unique(torch.cat([rows, queries], 0), dim=0, return_inverse=True)
    table = torch.full((int(inverse.max()) + 1,), m, dtype=torch.long, device=rows.device)
    table[inverse[:m]] = torch.arange(m, device=rows.device)
    return table[inverse[m:]]


def _unique_with_order(flat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sorted unique values, the inverse index, and the stable order that sorts ``flat``.

    ``torch.unique`` sorts too but does not return the order, which the CSR splat needs: one
    sort gives all three.
    """
    ordered, order = torch.sort(flat, stable=True)
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[1:] = ordered[1:] != ordered[:-1]
    ids = torch.cumsum(new, 0) - 1
    inverse = torch.empty_like(ids)
    inverse[order] = ids
    return ordered[new], inverse, order


def _csr(rows: Tensor, columns: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """Make a sparse CSR matrix without torch's (beta-layout) warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(rows, columns, values, size=size, check_invariants=False)
