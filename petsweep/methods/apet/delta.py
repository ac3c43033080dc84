"""APET's sparse delta parametrization (petsweep.methods.apet attaches it)."""

from __future__ import annotations

import torch
from torch import nn


class SparseDelta(nn.Module):
    """A parametrization: W0 plus `delta` added at the flat positions `idx` (W0 itself never changes)."""

    def __init__(self, idx: torch.Tensor, like: torch.Tensor, fp32: bool = True):
        super().__init__()
        self.register_buffer("idx", idx.to(like.device))
        self.delta = nn.Parameter(torch.zeros(idx.numel(), device=like.device, dtype=like.dtype))
        self.fp32 = fp32  # method.delta_fp32: W0 + delta formed in fp32 where W0 is held in bf16

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        if self.fp32 and original.dtype != torch.float32:  # a bf16 W0 would round a small delta away
            return original.float().reshape(-1).index_add(0, self.idx, self.delta.float()).view_as(original)
        return original.reshape(-1).index_add(0, self.idx, self.delta.to(original.dtype)).view_as(original)
