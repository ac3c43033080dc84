"""Matrix product operators (MPO): a matrix as a chain of n local tensors, by sequential SVDs.

A matrix W (I x J) with I = i_1 ... i_n and J = j_1 ... j_n is reshaped to [i_1..i_n, j_1..j_n], the axes
interleaved to [i_1, j_1, ..., i_n, j_n], and split left to right by thin SVDs into local tensors T_k of
shape (r_{k-1}, i_k, j_k, r_k), r_0 = r_n = 1. Full bond dimensions r_k = min(prod_{m<=k} i_m j_m,
prod_{m>k} i_m j_m) make the chain exact; `trunc` caps them. Unit factors (i_k = j_k = 1) add square bond
tensors: that is how OPF over-parameterises a matrix (Gao et al., 2023).

Gauges (any gauge contracts to the same W, but which tensor holds what decides what `train_central` /
`train_aux` train and how one optimizer step moves W):

- `opf` (OPF's `mpo_canonical`, the default): every bond k carries Lambda_k^(1/2) on both sides, Lambda_k the
  singular values of W unfolded at that bond: the tensors left of bond k contract to U_k Lambda_k^(1/2) and
  those right of it to Lambda_k^(1/2) V_k^T (W = U_k Lambda_k V_k^T there). So the end tensors hold
  U_1 Lambda_1^(1/2) and Lambda_{n-1}^(1/2) V^T, and a unit bond tensor between two bonds of one spectrum
  (the central tensor of the 7-core layouts) is orthogonal, not the spectrum's holder. Here it is reached from
  the left-orthonormal SVD sweep with diagonal gauges Lambda^(1/2) on each bond (the sweep's singular values
  are already those of every unfolding); OPF reaches the same form with two more SVD sweeps and inverse
  square roots. With `trunc`, OPF's order is followed: gauge at full bond dimension, then keep the largest
  Lambda on every bond.
- `central` (petsweep before): mixed-canonical around the central tensor (index (n-1)//2): tensors left of
  it left-orthonormal, right of it right-orthonormal, so the central tensor carries the whole spectrum and
  the others are isometries; bonds truncated in the sweep.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from petsweep.methods.opf.gauges import GAUGES


@dataclass(frozen=True)
class MpoShape:
    """The factorisation of one matrix: `rows` multiply to its rows, `cols` to its columns; `trunc` caps
    every bond dimension (None: exact)."""

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    trunc: int | None = None

    def __post_init__(self):
        if len(self.rows) != len(self.cols) or len(self.rows) < 2:
            raise ValueError(f"rows {self.rows} and cols {self.cols} need the same length n >= 2")

    @property
    def central(self) -> int:
        return (len(self.rows) - 1) // 2

    def fits(self, out_features: int, in_features: int) -> bool:
        return math.prod(self.rows) == out_features and math.prod(self.cols) == in_features

    def bonds(self) -> list[int]:
        """r_0 .. r_n."""
        sizes = [i * j for i, j in zip(self.rows, self.cols)]
        inner = [min(math.prod(sizes[: k + 1]), math.prod(sizes[k + 1 :])) for k in range(len(sizes) - 1)]
        if self.trunc is not None:
            inner = [min(self.trunc, r) for r in inner]
        return [1, *inner, 1]

    def tensor_shapes(self) -> list[tuple[int, int, int, int]]:
        r = self.bonds()
        return [(r[k], i, j, r[k + 1]) for k, (i, j) in enumerate(zip(self.rows, self.cols))]

    def params(self) -> int:
        """sum_k r_{k-1} i_k j_k r_k: the chain's size (no SVD needed)."""
        return sum(math.prod(s) for s in self.tensor_shapes())


def decompose(weight: torch.Tensor, shape: MpoShape, gauge: str = "opf") -> list[torch.Tensor]:
    """The local tensors of `weight` (rows x cols) in `gauge` (see the module), in float64 for the SVDs and
    returned in the weight's dtype."""
    rows, cols = shape.rows, shape.cols
    if not shape.fits(*weight.shape):
        raise ValueError(f"MPO factors {rows} x {cols} do not multiply to the matrix's {tuple(weight.shape)}")
    if gauge == "central":
        return _mixed_canonical(weight, shape)
    if gauge != "opf":
        raise ValueError(f"gauge {gauge!r}: choose one of {', '.join(GAUGES)}")
    return _symmetric(weight, shape)


def _symmetric(weight: torch.Tensor, shape: MpoShape) -> list[torch.Tensor]:
    """OPF's gauge: Lambda^(1/2) on both sides of every bond, at full bond dimension, then truncated."""
    rows, cols, n = shape.rows, shape.cols, len(shape.rows)
    bonds = MpoShape(rows, cols).bonds()  # full: OPF gauges the exact chain and truncates after
    order = [axis for k in range(n) for axis in (k, n + k)]
    rest = weight.detach().to(torch.float64).reshape(*rows, *cols).permute(order)
    isometries, spectra = [], [torch.ones(1, dtype=torch.float64)]  # spectra[k]: Lambda of bond k
    for k in range(n - 1):  # left to right: T_k = U (left-orthonormal), the rest = Lambda V^T
        r = bonds[k + 1]
        matrix = rest.reshape(bonds[k] * rows[k] * cols[k], -1)
        if rows[k] == cols[k] == 1 and r == bonds[k]:  # a unit bond tensor: the rest is already Lambda V^T
            isometries.append(torch.eye(r, dtype=rest.dtype).reshape(r, 1, 1, r))
            spectra.append(spectra[-1])
            rest = matrix
            continue
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        isometries.append(u[:, :r].reshape(bonds[k], rows[k], cols[k], r))
        spectra.append(s[:r])
        rest = s[:r, None] * vh[:r]
    # the last tensor, Lambda_{n-1} V^T, with the outer unit bond
    isometries.append(rest.reshape(bonds[n - 1], rows[n - 1], cols[n - 1], 1))
    spectra.append(torch.ones(1, dtype=torch.float64))
    # diagonal gauge g_k = Lambda_k^(1/2) on bond k: T_k -> g_k^-1 T_k g_{k+1}; the last tensor already holds
    # Lambda_{n-1} on its left, so it gets g_{n-1}^-1 only. Exact whatever g is (its inverse is used), so a
    # vanishing singular value is floored rather than divided by.
    roots = []
    for k, s in enumerate(spectra):
        floor = s.max() * torch.finfo(s.dtype).eps if k not in (0, n) else s.new_tensor(1.0)
        if floor <= 0:  # an all-zero block: any positive gauge is exact, so the identity
            floor = s.new_tensor(1.0)
        roots.append(s.clamp_min(floor).sqrt() if 0 < k < n else s)
    tensors = []
    for k, t in enumerate(isometries):
        right = roots[k + 1] if k < n - 1 else torch.ones(1, dtype=torch.float64)
        tensors.append(t / roots[k][:, None, None, None] * right)
    cut = shape.bonds()
    return [t[: cut[k], :, :, : cut[k + 1]].contiguous().to(weight.dtype) for k, t in enumerate(tensors)]


def _mixed_canonical(weight: torch.Tensor, shape: MpoShape) -> list[torch.Tensor]:
    """petsweep's earlier gauge: mixed-canonical around `shape.central` (it carries the spectrum)."""
    rows, cols, n = shape.rows, shape.cols, len(shape.rows)
    bonds = shape.bonds()
    order = [axis for k in range(n) for axis in (k, n + k)]  # [i_1, j_1, i_2, j_2, ...]
    rest = weight.detach().to(torch.float64).reshape(*rows, *cols).permute(order)
    tensors = []
    for k in range(n - 1):  # left to right: T_k = U, the rest = S V^T
        r = bonds[k + 1]
        if rows[k] == cols[k] == 1 and r == bonds[k]:  # a unit bond tensor: the identity is an exact split
            tensors.append(torch.eye(r, dtype=rest.dtype).reshape(r, 1, 1, r))
            rest = rest.reshape(r, -1)
            continue
        u, s, vh = torch.linalg.svd(rest.reshape(bonds[k] * rows[k] * cols[k], -1), full_matrices=False)
        tensors.append(u[:, :r].reshape(bonds[k], rows[k], cols[k], r))
        rest = s[:r, None] * vh[:r]
    tensors.append(rest.reshape(bonds[n - 1], rows[n - 1], cols[n - 1], 1))
    for k in range(n - 1, shape.central, -1):  # right to left: move the spectrum to the central tensor
        q, r_ = torch.linalg.qr(tensors[k].reshape(tensors[k].shape[0], -1).T)
        tensors[k] = q.T.reshape(-1, *tensors[k].shape[1:])
        tensors[k - 1] = torch.tensordot(tensors[k - 1], r_.T, dims=([3], [0]))
    return [t.to(weight.dtype) for t in tensors]


def contract(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The matrix a chain represents (differentiable: OPF's forward contracts its trained tensors).

    Contracted in the tensors' own (promoted) dtype with autocast off: under bf16 autocast each tensordot
    would return bf16 and the next would mix it with an fp32 tensor (a dtype error); the layer's matmul
    that uses the matrix still runs under the run's autocast."""
    n = len(tensors)
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    device = tensors[0].device.type
    with torch.autocast(device if device in ("cpu", "cuda") else "cpu", enabled=False):
        out = tensors[0].to(dtype)  # (1, i_1, j_1, r_1)
        for t in tensors[1:]:
            out = torch.tensordot(out, t.to(dtype), dims=([out.dim() - 1], [0]))  # (1, i_1, j_1, ..., r_k)
    out = out.reshape(out.shape[1:-1])  # drop the two unit bonds
    rows = [out.shape[2 * k] for k in range(n)]
    cols = [out.shape[2 * k + 1] for k in range(n)]
    return out.permute([*range(0, 2 * n, 2), *range(1, 2 * n, 2)]).reshape(math.prod(rows), math.prod(cols))


def _balanced_factors(number: int, count: int) -> list[int]:
    """`count` factors of `number`, as equal as its prime factors allow (1s where it has too few)."""
    primes, rest, p = [], number, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    bins = [1] * count
    for prime in sorted(primes, reverse=True):
        bins[bins.index(min(bins))] *= prime
    return sorted(bins)


def auto_shape(out_features: int, in_features: int, trunc: int | None = None) -> MpoShape:
    """The OPF code's 7-core layout for any matrix: 5 balanced factors of each side, two unit factors (bond
    tensors, the over-parameterisation) after the second. For 768 x 768 it is the BART preset's shape."""
    rows, cols = _balanced_factors(out_features, 5), _balanced_factors(in_features, 5)[::-1]
    return MpoShape((*rows[:2], 1, 1, *rows[2:]), (*cols[:2], 1, 1, *cols[2:]), trunc)
