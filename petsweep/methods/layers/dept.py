"""DePT's low-rank position offset (petsweep.methods.dept attaches it)."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionOffset(nn.Module):
    """alpha / sqrt(r) * (A B)[position], added to token embeddings; positions outside [0, s) get nothing."""

    def __init__(self, rows: int, rank: int, width: int, alpha: float, like: torch.Tensor):
        super().__init__()
        self.lora_embedding_A = nn.Parameter(torch.empty(rows, rank, device=like.device, dtype=like.dtype))
        self.lora_embedding_B = nn.Parameter(torch.zeros(rank, width, device=like.device, dtype=like.dtype))
        self.scale = alpha / math.sqrt(rank)

    def reset(self) -> None:
        nn.init.kaiming_uniform_(self.lora_embedding_A, a=math.sqrt(5))  # fan-in r, as the seed's
        self.lora_embedding_B.zero_()

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        rows = self.lora_embedding_A.shape[0]
        update = self.scale * (self.lora_embedding_A @ self.lora_embedding_B)
        update = torch.cat([update, update.new_zeros(1, update.shape[1])])  # row s: no offset
        inside = (positions >= 0) & (positions < rows)
        return embeds + update[torch.where(inside, positions, rows)].to(embeds.dtype)
