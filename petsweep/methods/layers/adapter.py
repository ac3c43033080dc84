"""The adapter's bottleneck module (petsweep.methods.adapter attaches it)."""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, width: int, bottleneck: int, activation: str, init_std: float, like: torch.Tensor):
        super().__init__()
        kwargs = dict(device=like.device, dtype=like.dtype)
        self.down = nn.Linear(width, bottleneck, **kwargs)
        self.up = nn.Linear(bottleneck, width, **kwargs)
        self.act = getattr(nn, activation)()  # a torch.nn class name (adapter.ACTIVATIONS)
        if like.device.type != "meta":
            for linear in (self.down, self.up):
                nn.init.normal_(linear.weight, std=init_std)
                nn.init.zeros_(linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden)))


def output_width(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.weight.shape[1]  # transformers' Conv1D (GPT-2) stores (in, out)
