"""OPF's MPO-factored Linear (petsweep.methods.opf attaches it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from petsweep.methods.opf.mpo import MpoShape, contract, decompose


class MpoLinear(nn.Module):
    """A Linear whose weight is the contraction of MPO local tensors; the Linear's own bias is kept."""

    def __init__(
        self, linear: nn.Linear, shape: MpoShape, family: str = "", round_: int = 0, gauge: str = "opf"
    ):
        super().__init__()
        self.shape, self.in_features, self.out_features = shape, linear.in_features, linear.out_features
        self.gauge = gauge
        self.family, self.round = family, round_  # what result.json records of it
        weight = linear.weight
        self.tensors = nn.ParameterList(
            nn.Parameter(torch.empty(s, device=weight.device, dtype=weight.dtype))
            for s in shape.tensor_shapes()
        )
        self.bias = linear.bias
        # the pretrained weight, decomposed in setup; a plain list, so it is no parameter of the model
        self._pending = [weight]

    def load(self) -> None:
        for tensor, value in zip(self.tensors, decompose(self._pending.pop(), self.shape, self.gauge)):
            tensor.copy_(value)

    @property
    def weight(self) -> torch.Tensor:
        """The dense matrix (models read a Linear's weight: T5 casts its FFN input to `wo.weight.dtype`)."""
        return contract(list(self.tensors))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)
