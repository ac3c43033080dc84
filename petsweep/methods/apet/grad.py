"""APET's sampled-product gradient for a Linear whose weight trains at k positions only.

A Linear's weight gradient is G^T X (out x in, N tokens): forming it to keep k of its entries costs as much as
training the whole matrix. The k entries are G[:, r_j] . X[:, c_j], a sampled product: O(N k) instead of
O(N out in). Where the tensor holds so many positions that the sampled product is dearer, the dense product
is formed and gathered; both are exact. The input gradient and the forward use W0 + scatter(delta), as the
dense parametrization does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# positions / matrix size from which the dense product is the cheaper one. benchmarks/apet_gradient.py on
# this machine's CPU (N = 2048 tokens, a 384 x 1536 matrix; BENCHMARKS.md): the dense product takes about
# 7 ms whatever k is; the sampled products about 3 ms at 1/1024 of the matrix, 14 ms at 1/256, 83 ms at 1.4%.
# A BLAS product runs near peak while the gathers are memory-bound, so the sampled path pays only for very
# sparse tensors (the crossover is near 1/512; the threshold is left where the runs were measured).
DENSE_FROM = 1 / 256


def _with_delta(weight: torch.Tensor, delta: torch.Tensor, idx: torch.Tensor, fp32: bool) -> torch.Tensor:
    """W0 + scatter(idx, delta). `fp32` with a low-precision W0: the sum is formed in fp32 (a bf16 W0 would
    round a small delta away: bf16 keeps 8 bits); autocast casts it for the product as any fp32 weight."""
    if fp32 and weight.dtype != torch.float32:
        return weight.float().reshape(-1).index_add(0, idx, delta.float()).view_as(weight)
    return weight.reshape(-1).index_add(0, idx, delta.to(weight.dtype)).view_as(weight)


class SampledLinear(torch.autograd.Function):
    """y = x (W0 + scatter(idx, delta))^T + b, saving W0 (the frozen parameter itself, no copy) rather than
    the summed weight: the sum is formed again in the backward (out x in additions against the product's
    N x out x in), so the step holds no second copy of the backbone's matrices."""

    @staticmethod
    def forward(ctx, x, weight, bias, delta, idx, fp32=False):
        ctx.save_for_backward(x, weight, delta, idx)
        ctx.has_bias = bias is not None
        ctx.fp32 = fp32
        ctx.dtypes = (x.dtype, None if bias is None else bias.dtype)
        return F.linear(x, _with_delta(weight, delta, idx, fp32), bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight, delta, idx = ctx.saved_tensors
        # under autocast the output gradient comes in the compute dtype (bf16) whatever W0 and x are held in:
        # the products run in that dtype (as autocast's own linear backward does), each gradient is returned
        # in its input's dtype
        w = _with_delta(weight, delta, idx, ctx.fp32).to(grad.dtype)
        out_features, in_features = w.shape
        g2, x2 = grad.reshape(-1, out_features), x.reshape(-1, in_features).to(grad.dtype)
        x_dtype, bias_dtype = ctx.dtypes
        grad_x = (grad @ w).to(x_dtype) if ctx.needs_input_grad[0] else None
        grad_bias = g2.sum(0).to(bias_dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        grad_delta = None
        if ctx.needs_input_grad[3]:
            if idx.numel() >= DENSE_FROM * w.numel():
                grad_delta = (g2.t() @ x2).reshape(-1)[idx]
            else:
                rows, cols = idx // in_features, idx % in_features
                grad_delta = (g2[:, rows] * x2[:, cols]).sum(0)
            grad_delta = grad_delta.to(delta.dtype)
        return grad_x, None, grad_bias, grad_delta, None, None


def sample_gradients(linear: nn.Linear, delta: nn.Module) -> None:
    """Make `linear` add `delta` (an apet SparseDelta) to its weight, with sampled-product gradients."""
    linear.add_module("apet_weight", delta)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return SampledLinear.apply(x, linear.weight, linear.bias, delta.delta, delta.idx, delta.fp32)

    linear.forward = forward


def merge_sampled(model: nn.Module) -> None:
    """Add every sampled delta into its weight and give the Linear back its own forward (export)."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and hasattr(module, "apet_weight"):
            with torch.no_grad():
                module.weight.view(-1).index_add_(0, module.apet_weight.idx, module.apet_weight.delta)
            del module.apet_weight
            del module.forward
