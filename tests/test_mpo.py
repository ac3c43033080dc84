"""MPO decomposition (OPF's building block): exact at full bond dimension, the seed's sizes, the gauges."""

from __future__ import annotations

import pytest
import torch

from petsweep.methods.opf.mpo import MpoShape, contract, decompose

ONES = (1,) * 13
# (rows, cols, matrix, MPO parameters): the shape configurations of the OPF code (spec 2.2)
SEED_SHAPES = [
    ((32, *ONES, 24), (32, *ONES, 24), (768, 768), 5_234_688),
    ((64, *ONES, 48), (32, *ONES, 24), (3072, 768), 20_938_752),
    ((32, 32), (32, 32), (1024, 1024), 2_097_152),
    ((8, 2, 2, 2, 2, 6), (8, 2, 2, 2, 2, 6), (768, 768), 1_013_264),
    ((16, 2, *(1,) * 11, 2, 12), (16, 2, *(1,) * 11, 2, 12), (768, 768), 4_657_408),
    ((16, 2, 2, *(1,) * 9, 2, 2, 12), (16, 2, *(1,) * 11, 2, 12), (3072, 768), 17_096_960),
    ((3, 4, 1, 1, 4, 4, 4), (4, 4, 1, 1, 4, 4, 3), (768, 768), 737_568),
    ((8, 4, 1, 1, 4, 4, 6), (3, 4, 1, 1, 4, 4, 4), (3072, 768), 2_950_272),
]


@pytest.mark.parametrize(("rows", "cols", "matrix", "params"), SEED_SHAPES)
def test_sizes_are_the_seed_codes(rows, cols, matrix, params):
    shape = MpoShape(rows, cols)
    assert shape.fits(*matrix) and shape.params() == params


@pytest.mark.parametrize(
    ("rows", "cols", "matrix", "params"), [SEED_SHAPES[3], SEED_SHAPES[6], SEED_SHAPES[7]]
)
def test_full_bond_dimension_reconstructs_exactly_in_fp32(rows, cols, matrix, params):
    weight = torch.randn(*matrix, generator=torch.Generator().manual_seed(0)) * 0.05
    tensors = decompose(weight, MpoShape(rows, cols))
    assert [tuple(t.shape) for t in tensors] == MpoShape(rows, cols).tensor_shapes()
    assert sum(t.numel() for t in tensors) == params
    assert (contract(tensors) - weight).abs().max() <= 1e-5


def _sides(tensors, bond):
    """The tensors left of `bond` contracted to a matrix (rows: their indices, columns: the bond) and those
    right of it (rows: the bond)."""
    left = tensors[0]
    for t in tensors[1:bond]:
        left = torch.tensordot(left, t, dims=([left.dim() - 1], [0]))
    right = tensors[bond]
    for t in tensors[bond + 1 :]:
        right = torch.tensordot(right, t, dims=([right.dim() - 1], [0]))
    return left.reshape(-1, left.shape[-1]), right.reshape(right.shape[0], -1)


@pytest.mark.parametrize(("rows", "cols"), [SEED_SHAPES[6][:2], SEED_SHAPES[3][:2]])
def test_the_opf_gauge_puts_the_square_root_spectrum_on_both_sides_of_every_bond(rows, cols):
    """OPF's gauge (its mpo_canonical): at every bond k, W = U_k Lambda_k V_k^T unfolded there, the tensors
    left of the bond contract to U_k Lambda_k^(1/2) and those right of it to Lambda_k^(1/2) V_k^T, so
    X^T X = Y Y^T = diag(Lambda_k), the singular values of that unfolding. A unit bond tensor between two
    bonds of one spectrum (the central tensor here) is then orthogonal."""
    shape = MpoShape(rows, cols)
    weight = torch.randn(768, 768, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tensors = decompose(weight, shape)  # the default gauge is OPF's
    torch.testing.assert_close(contract(tensors), weight, atol=1e-12, rtol=0)
    n = len(rows)
    grid = weight.reshape(*rows, *cols).permute([a for k in range(n) for a in (k, n + k)])
    for bond in range(1, n):
        x, y = _sides(tensors, bond)
        spectrum = torch.linalg.svdvals(grid.reshape(x.shape[0], -1))[: x.shape[1]]
        torch.testing.assert_close(x.T @ x, torch.diag(spectrum), atol=1e-9, rtol=0)
        torch.testing.assert_close(y @ y.T, torch.diag(spectrum), atol=1e-9, rtol=0)
    if rows[shape.central] == cols[shape.central] == 1:
        central = tensors[shape.central].reshape(tensors[shape.central].shape[0], -1)
        torch.testing.assert_close(central @ central.T, torch.eye(central.shape[0], dtype=torch.float64))


def test_the_opf_gauge_truncates_after_gauging_keeping_the_largest_values_of_every_bond():
    weight = torch.randn(768, 768, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    full = decompose(weight, MpoShape((8, 2, 2, 2, 2, 6), (8, 2, 2, 2, 2, 6)))
    cut = decompose(weight, MpoShape((8, 2, 2, 2, 2, 6), (8, 2, 2, 2, 2, 6), 16))
    for t, f in zip(cut, full):
        assert torch.equal(t, f[: t.shape[0], :, :, : t.shape[3]])


def test_an_unknown_gauge_is_refused():
    with pytest.raises(ValueError, match="choose one of opf, central"):
        decompose(torch.zeros(4, 4), MpoShape((2, 2), (2, 2)), "vidal")


def test_the_central_gauge_puts_the_spectrum_on_the_central_tensor():
    """petsweep's earlier gauge (gauge=central): tensors left of the centre are left-orthonormal, right of it
    right-orthonormal, so the matrix's Frobenius norm is the central tensor's alone."""
    shape = MpoShape((3, 4, 1, 1, 4, 4, 4), (4, 4, 1, 1, 4, 4, 3))
    weight = torch.randn(768, 768, dtype=torch.float64)
    tensors = decompose(weight, shape, "central")
    c = shape.central
    for k, t in enumerate(tensors):
        if k < c:
            m = t.reshape(-1, t.shape[3])
            assert torch.allclose(m.T @ m, torch.eye(m.shape[1], dtype=m.dtype), atol=1e-10)
        elif k > c:
            m = t.reshape(t.shape[0], -1)
            assert torch.allclose(m @ m.T, torch.eye(m.shape[0], dtype=m.dtype), atol=1e-10)
    assert torch.isclose(tensors[c].norm(), weight.norm())


def test_truncation_caps_bonds_and_approximates():
    weight = torch.randn(768, 768, dtype=torch.float64)
    full, cut = (
        MpoShape((8, 2, 2, 2, 2, 6), (8, 2, 2, 2, 2, 6)),
        MpoShape((8, 2, 2, 2, 2, 6), (8, 2, 2, 2, 2, 6), 16),
    )
    assert max(cut.bonds()) == 16 and cut.params() < full.params()
    for gauge in ("opf", "central"):
        error = (contract(decompose(weight, cut, gauge)) - weight).norm() / weight.norm()
        assert 0 < error < 1


def test_factors_that_do_not_multiply_to_the_matrix_are_refused():
    with pytest.raises(ValueError, match=r"do not multiply to the matrix's \(768, 768\)"):
        decompose(torch.zeros(768, 768), MpoShape((3, 4, 4, 4, 4), (4, 4, 4, 4, 4)))
    with pytest.raises(ValueError, match="same length"):
        MpoShape((768,), (768,))


@pytest.mark.parametrize("gauge", ["opf", "central"])
@pytest.mark.parametrize("kind", ["zero", "rank1"])
def test_zero_and_rank_one_matrices_decompose_exactly(gauge, kind):
    """An all-zero block floored its gauge at s.max() * eps = 0 and divided by it: NaN tensors."""
    shape = MpoShape((2, 4, 1, 1, 4), (4, 2, 1, 1, 4))
    torch.manual_seed(0)
    matrix = torch.zeros(32, 32) if kind == "zero" else torch.outer(torch.randn(32), torch.randn(32))
    tensors = decompose(matrix, shape, gauge=gauge)
    assert all(torch.isfinite(t).all() for t in tensors)
    torch.testing.assert_close(contract(tensors), matrix, atol=1e-5, rtol=1e-5)


def test_contract_under_bf16_autocast_mixes_no_dtypes():
    shape = MpoShape((2, 4, 1, 1, 4), (4, 2, 1, 1, 4))
    matrix = torch.randn(32, 32)
    tensors = decompose(matrix, shape)
    with torch.autocast("cpu", torch.bfloat16):
        out = contract(tensors)
    torch.testing.assert_close(out, matrix, atol=1e-5, rtol=1e-5)
