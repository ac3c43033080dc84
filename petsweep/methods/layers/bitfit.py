"""BitFit's added norm bias (petsweep.methods.bitfit attaches it with add_biases=true)."""

from __future__ import annotations

import torch
from torch import nn


class NormBias(nn.Module):
    """A bias added after a norm that has none (RMSNorm), applied by a forward hook."""

    def __init__(self, width: int, like: torch.Tensor):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(width, device=like.device, dtype=like.dtype))
