"""APET's sampled Linear (petsweep/methods/apet/grad.py): every kernel that forms the delta gradient (the
gathers, torch.sparse.sampled_addmm on the positions' CSR pattern, the dense product gathered) gives the
gradients the dense parametrization gives, and the rule picks sampled_addmm at LoRA's budget (issue #25)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_apet import _delta_grads

from petsweep.methods.apet import grad as apet_grad
from petsweep.methods.apet.grad import Pattern, SampledLinear, choose_kernel

KERNELS = ["gathers", "sampled_addmm", "dense"]


def _one_linear(kernel, monkeypatch, share: float, dtype=torch.float32, shuffled: bool = False):
    """Gradients of x, bias and delta through SampledLinear with `kernel` forced, and through autograd of
    F.linear(x, W0 + scatter(idx, delta)) (the dense parametrization's computation)."""
    monkeypatch.setattr(apet_grad, "choose_kernel", lambda *_: kernel)
    generator = torch.Generator().manual_seed(0)
    out_features, in_features, tokens = 48, 80, 3 * 37
    k = int(share * out_features * in_features)
    idx = torch.randperm(out_features * in_features, generator=generator)[:k]
    idx = idx if shuffled else idx.sort().values
    x = torch.randn(3, 37, in_features, generator=generator, dtype=dtype)
    weight = torch.randn(out_features, in_features, generator=generator, dtype=dtype)
    bias = torch.randn(out_features, generator=generator, dtype=dtype)
    delta = torch.randn(k, generator=generator, dtype=dtype) / 10
    upstream = torch.randn(3, 37, out_features, generator=generator, dtype=dtype)
    assert x.reshape(-1, in_features).shape[0] == tokens

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in (x, bias, delta)]
        (fn(*leaves) * upstream).sum().backward()
        return [t.grad for t in leaves]

    sampled = grads(
        lambda x_, b_, d_: SampledLinear.apply(x_, weight, b_, d_, idx, False, Pattern(weight.shape))
    )
    dense = grads(
        lambda x_, b_, d_: F.linear(x_, weight.reshape(-1).index_add(0, idx, d_).view_as(weight), b_)
    )
    return sampled, dense


@pytest.mark.parametrize("share", [0.002, 0.014, 0.2])
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_gives_the_dense_parametrizations_gradients(kernel, share, monkeypatch):
    sampled, dense = _one_linear(kernel, monkeypatch, share)
    for name, got, want in zip(("x", "bias", "delta"), sampled, dense):
        scale = float(want.abs().max())  # fp32 sums of 111 products: rounding is relative to their size
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * scale, msg=f"{kernel}: {name}")


@pytest.mark.parametrize("kernel", KERNELS)
def test_in_fp64_the_kernels_agree_to_rounding(kernel, monkeypatch):
    """In fp64 the summation order is all that differs: agreement to 1e-12 says each kernel computes the
    same sum (a wrong position or a transposed pattern would be off by O(1))."""
    sampled, dense = _one_linear(kernel, monkeypatch, 0.05, dtype=torch.float64)
    for got, want in zip(sampled, dense):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_positions_in_any_order_come_back_in_their_order(monkeypatch):
    """sampled_addmm returns the entries row by row: positions not in ascending order are put back."""
    sampled, dense = _one_linear("sampled_addmm", monkeypatch, 0.05, dtype=torch.float64, shuffled=True)
    torch.testing.assert_close(sampled[2], dense[2], rtol=1e-12, atol=1e-12)


def test_the_pattern_follows_new_positions():
    """A loaded state (idx copied in place) or a move to another tensor builds the pattern again."""
    pattern = Pattern((4, 5))
    idx = torch.tensor([0, 7, 19])
    crow, col, order = pattern.get(idx)
    assert crow.tolist() == [0, 1, 2, 2, 3] and col.tolist() == [0, 2, 4] and order is None
    idx.copy_(torch.tensor([18, 1, 6]))
    crow, col, order = pattern.get(idx)
    assert crow.tolist() == [0, 1, 2, 2, 3] and col.tolist() == [1, 1, 3] and order.tolist() == [1, 2, 0]
    assert pattern.get(idx.clone())[1].tolist() == [1, 1, 3]


def test_lora_sized_budgets_take_sampled_addmm_and_tiny_ones_the_gathers():
    """MiniLM-L6 at LoRA's K (73,728 of 10.6M eligible: about 0.7% of each matrix) took the dense product
    (1.21 x LoRA's step, BENCHMARKS.md); sampled_addmm is 3 to 4 times cheaper there. K = 4096 (about 60
    positions of a 384 x 384 matrix) keeps the gathers; bf16 gradients, which sampled_addmm does not take,
    keep the rule from before."""
    cpu, fp32 = torch.device("cpu"), torch.float32
    for shape in [(384, 384), (1536, 384), (384, 1536)]:
        numel = shape[0] * shape[1]
        assert choose_kernel(int(0.007 * numel), shape, fp32, cpu) == "sampled_addmm"
        assert choose_kernel(int(0.0004 * numel), shape, fp32, cpu) == "gathers"
        assert choose_kernel(int(0.2 * numel), shape, fp32, cpu) == "dense"
        assert choose_kernel(int(0.007 * numel), shape, torch.bfloat16, cpu) == "dense"
        assert choose_kernel(int(0.0004 * numel), shape, torch.bfloat16, cpu) == "gathers"
        assert choose_kernel(int(0.007 * numel), shape, fp32, torch.device("meta")) == "dense"


@pytest.mark.parametrize("kernel", ["gathers", "sampled_addmm"])
def test_a_models_sampled_gradients_equal_the_dense_ones_with_each_kernel(tiny, kernel, monkeypatch):
    """The whole tiny BERT, every sampled Linear on one kernel, against method.gradient=dense."""
    monkeypatch.setattr(apet_grad, "choose_kernel", lambda *_: kernel)
    sampled = _delta_grads(tiny, "sampled")
    monkeypatch.undo()
    dense = _delta_grads(tiny, "dense")
    assert sampled.keys() == dense.keys() and len(sampled) > 4
    for name in dense:
        torch.testing.assert_close(sampled[name], dense[name], rtol=1e-4, atol=1e-6)
