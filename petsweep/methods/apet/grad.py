"""APET's sampled-product gradient for a Linear whose weight trains at k positions only.

A Linear's weight gradient is G^T X (out x in, N tokens): forming it to keep k of its entries costs as much as
training the whole matrix. The k entries are G[:, r_j] . X[:, c_j], a sampled dense-dense product (SDDMM):
O(N k) instead of O(N out in). On the CPU in fp32/fp64 it is `torch.sparse.sampled_addmm` on the positions'
CSR pattern (built once per matrix and device): one vectorised dot product per position over the tokens,
rows split between threads. Where sampled_addmm does not run (bf16/fp16, other devices), the products are
gathers of k columns of G and X, multiplied and summed. Where the tensor holds so many positions that the
sampled products are dearer, the dense product is formed and gathered; all are exact (to float summation
order). The input gradient and the forward use W0 + scatter(delta), as the dense parametrization does.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

# Which product gives a Linear's delta gradient (benchmarks/apet_gradient.py, BENCHMARKS.md "APET step time";
# N = 2048 tokens, MiniLM-L6's matrices, this machine's CPU, one thread):
# - the dense product costs the same at any k (24 ms for 384 x 1536);
# - sampled_addmm pays two transposes (N (out + in) copies) and then one dot product over N per position:
#   6 ms at 1/1024 of 384 x 1536, 8 ms at 1.4%, 15 ms at 5%, about the dense product's at 10%;
# - the gathers write two N x k tensors (memory-bound): cheapest for a few positions only (0.7 ms against
#   sampled_addmm's 4.8 for 58 positions of 384 x 384), 8 times sampled_addmm's at 1.4%.
DENSE_FROM = 1 / 16  # positions / matrix from which the dense product is formed and gathered
GATHERS_BELOW = 1 / 8  # the gathers below this x (out + in) positions, or where sampled_addmm does not run
GATHERS_DENSE_FROM = 1 / 256  # ... and there the dense product from 1/256 of the matrix (as measured before)
# the dtypes torch.sparse.sampled_addmm computes on the CPU (torch 2.x: not bf16 or fp16)
SAMPLED_ADDMM_DTYPES = (torch.float32, torch.float64)
# the pattern is a CSR tensor only for the product's call: torch's notice that CSR support is "beta" says
# nothing about a run
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


def choose_kernel(k: int, shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> str:
    """How the gradient at k positions of an out x in weight is formed: gathers, sampled_addmm or dense."""
    out_features, in_features = shape
    numel = out_features * in_features
    if (
        device.type == "cpu"
        and dtype in SAMPLED_ADDMM_DTYPES
        and k >= GATHERS_BELOW * (out_features + in_features)
    ):
        return "sampled_addmm" if k < DENSE_FROM * numel else "dense"
    return "gathers" if k < GATHERS_DENSE_FROM * numel else "dense"


class Pattern:
    """One matrix's positions as a CSR pattern (rows, then columns, ascending), built from the `idx` buffer on
    first use and kept while idx stays the same tensor (so it follows the module to another device and a
    loaded state).
    `order` maps the pattern's entries back to idx's order (None: idx is ascending, as the positions are)."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape
        self._cache: dict = {}

    def get(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        key = (idx.device, idx.data_ptr(), idx._version)
        if key not in self._cache:
            out_features, in_features = self.shape
            ascending, order = idx.sort()
            if bool((order == torch.arange(idx.numel(), device=idx.device)).all()):
                order = None
            rows = torch.bincount(ascending // in_features, minlength=out_features)
            crow = torch.zeros(out_features + 1, dtype=torch.long, device=idx.device)
            crow[1:] = rows.cumsum(0)
            self._cache = {key: (crow, ascending % in_features, order)}  # one device at a time
        return self._cache[key]


def sampled_gradient(g2: torch.Tensor, x2: torch.Tensor, pattern: Pattern, idx: torch.Tensor) -> torch.Tensor:
    """(G^T X) at the positions (idx's order) by torch.sparse.sampled_addmm; G: N x out, X: N x in."""
    crow, col, order = pattern.get(idx)
    csr = torch.sparse_csr_tensor(
        crow,
        col,
        torch.zeros(col.numel(), dtype=g2.dtype, device=g2.device),
        pattern.shape,
        check_invariants=False,
    )
    values = torch.sparse.sampled_addmm(csr, g2.t(), x2, beta=0.0).values()
    if order is None:
        return values
    return torch.empty_like(values).index_copy_(0, order, values)


def _with_delta(weight: torch.Tensor, delta: torch.Tensor, idx: torch.Tensor, fp32: bool) -> torch.Tensor:
    """W0 + scatter(idx, delta). `fp32` with a low-precision W0: the sum is formed in fp32 (a bf16 W0 would
    round a small delta away: bf16 keeps 8 bits); autocast casts it for the product as any fp32 weight."""
    if fp32 and weight.dtype != torch.float32:
        return weight.float().reshape(-1).index_add(0, idx, delta.float()).view_as(weight)
    return weight.reshape(-1).index_add(0, idx, delta.to(weight.dtype)).view_as(weight)


def delta_gradient(g2: torch.Tensor, x2: torch.Tensor, idx: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """G^T X at the flat positions idx (G: N x out, X: N x in), by the cheapest exact way (choose_kernel)."""
    kernel = choose_kernel(idx.numel(), pattern.shape, g2.dtype, g2.device)
    if kernel == "sampled_addmm":
        return sampled_gradient(g2, x2, pattern, idx)
    if kernel == "gathers":
        rows, cols = idx // x2.shape[1], idx % x2.shape[1]
        return (g2[:, rows] * x2[:, cols]).sum(0)
    return (g2.t() @ x2).reshape(-1)[idx]


class SampledLinear(torch.autograd.Function):
    """y = x (W0 + scatter(idx, delta))^T + b, saving W0 (the frozen parameter itself, no copy) rather than
    the summed weight: the sum is formed again in the backward (out x in additions against the product's
    N x out x in), so the step holds no second copy of the backbone's matrices."""

    @staticmethod
    def forward(ctx, x, weight, bias, delta, idx, fp32=False, pattern=None):
        ctx.save_for_backward(x, weight, delta, idx)
        ctx.has_bias = bias is not None
        ctx.fp32 = fp32
        ctx.pattern = pattern if pattern is not None else Pattern(tuple(weight.shape))
        ctx.dtypes = (x.dtype, None if bias is None else bias.dtype)
        return F.linear(x, _with_delta(weight, delta, idx, fp32), bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight, delta, idx = ctx.saved_tensors
        # under autocast the output gradient comes in the compute dtype (bf16) whatever W0 and x are held in:
        # the products run in that dtype (as autocast's own linear backward does), each gradient is returned
        # in its input's dtype
        out_features, in_features = weight.shape
        g2, x2 = grad.reshape(-1, out_features), x.reshape(-1, in_features).to(grad.dtype)
        x_dtype, bias_dtype = ctx.dtypes
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ _with_delta(weight, delta, idx, ctx.fp32).to(grad.dtype)).to(x_dtype)
        grad_bias = g2.sum(0).to(bias_dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        grad_delta = None
        if ctx.needs_input_grad[3]:
            grad_delta = delta_gradient(g2, x2, idx, ctx.pattern).to(delta.dtype)
        return grad_x, None, grad_bias, grad_delta, None, None, None


def sample_gradients(linear: nn.Linear, delta: nn.Module) -> None:
    """Make `linear` add `delta` (an apet SparseDelta) to its weight, with sampled-product gradients."""
    linear.add_module("apet_weight", delta)
    pattern = Pattern(tuple(linear.weight.shape))

    def forward(x: torch.Tensor) -> torch.Tensor:
        return SampledLinear.apply(x, linear.weight, linear.bias, delta.delta, delta.idx, delta.fp32, pattern)

    linear.forward = forward


def merge_sampled(model: nn.Module) -> None:
    """Add every sampled delta into its weight and give the Linear back its own forward (export)."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and hasattr(module, "apet_weight"):
            with torch.no_grad():
                module.weight.view(-1).index_add_(0, module.apet_weight.idx, module.apet_weight.delta)
            del module.apet_weight
            del module.forward
