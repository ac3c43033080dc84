"""Matrix product operators (MPO): a matrix as a chain of n local tensors, by sequential SVDs.

A matrix W (I x J) with I = i_1 ... i_n and J = j_1 ... j_n is reshaped to [i_1..i_n, j_1..j_n], the axes
interleaved to [i_1, j_1, ..., i_n, j_n], and split left to right by thin SVDs into local tensors T_k of
shape (r_{k-1}, i_k, j_k, r_k), r_0 = r_n = 1. Full bond dimensions r_k = min(prod_{m<=k} i_m j_m,
prod_{m>k} i_m j_m) make the chain exact; `trunc` caps them. Unit factors (i_k = j_k = 1) add square bond
tensors: that is how OPF over-parameterises a matrix (Gao et al., 2023).

The chain is left in mixed-canonical form around the central tensor (index (n-1)//2): tensors to its left are
left-orthonormal, those to its right right-orthonormal, so the central tensor carries the spectrum (the
"core" the OPF paper freezes or trains on its own) and the others are isometries. The seed code reaches the
same kind of gauge with extra SVD sweeps and explicit gauge matrices; any gauge contracts to the same W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


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


def decompose(weight: torch.Tensor, shape: MpoShape) -> list[torch.Tensor]:
    """The local tensors of `weight` (rows x cols), mixed-canonical around `shape.central`, in float64 for
    the SVDs and returned in the weight's dtype."""
    rows, cols, n = shape.rows, shape.cols, len(shape.rows)
    if not shape.fits(*weight.shape):
        raise ValueError(f"MPO factors {rows} x {cols} do not multiply to the matrix's {tuple(weight.shape)}")
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
    """The matrix a chain represents (differentiable: OPF's forward contracts its trained tensors)."""
    n = len(tensors)
    out = tensors[0]  # (1, i_1, j_1, r_1)
    for t in tensors[1:]:
        out = torch.tensordot(out, t, dims=([out.dim() - 1], [0]))  # (1, i_1, j_1, ..., i_k, j_k, r_k)
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
