"""The soft prompt module (petsweep.methods.prompt and dept install it)."""

from __future__ import annotations

import torch
from torch import nn

from petsweep.spec.errors import ConfigError


class SoftPrompt(nn.Module):
    """The prompt vectors, and optionally an `offset` of the input embeddings by position (DePT's A B)."""

    def __init__(self, length: int, embedding: nn.Embedding, offset: nn.Module | None = None):
        super().__init__()
        weight = embedding.weight
        self.embedding = nn.Parameter(
            torch.empty(length, weight.shape[1], device=weight.device, dtype=weight.dtype)
        )
        self.offset = offset

    def initialize(self, c, vocabulary: torch.Tensor, tokenizer) -> None:
        """Rows of the vocabulary (drawn at random, or the tokens of `init_text`) or uniform noise."""
        length = self.embedding.shape[0]
        if c.init == "vocab":
            self.embedding.copy_(vocabulary[torch.randint(0, vocabulary.shape[0], (length,))])
        elif c.init == "text":
            ids = text_ids(c, tokenizer)
            self.embedding.copy_(vocabulary[torch.tensor((ids * -(-length // len(ids)))[:length])])
        else:
            self.embedding.uniform_(-c.init_range, c.init_range)

    def inputs(self, embeds: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's input embeddings and mask: the prompt in front of the (offset) token embeddings."""
        batch, length = embeds.shape[0], self.embedding.shape[0]
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        if self.offset is not None:  # the mask's last columns are the tokens' (a prefix may add ones before)
            embeds = self.offset(embeds, token_positions(mask[:, mask.shape[1] - embeds.shape[1] :]))
        prompt = self.embedding.unsqueeze(0).expand(batch, -1, -1).to(embeds.dtype)
        ones = torch.ones(batch, length, dtype=mask.dtype, device=mask.device)
        return torch.cat([prompt, embeds], 1), torch.cat([ones, mask], 1)


def token_positions(mask: torch.Tensor) -> torch.Tensor:
    """Each token's position among the real tokens of its row (left padding does not shift it); pads < 0."""
    return mask.long().cumsum(1) - 1 - (mask == 0).long() * mask.shape[1]


def text_ids(c, tokenizer) -> list[int]:
    """The token ids of `init_text`."""
    if tokenizer is None:
        raise ValueError("prompt init=text needs the backbone's tokenizer (AttachContext.tokenizer)")
    ids = tokenizer(c.init_text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError("method.init_text", c.init_text, "has no tokens for this backbone's tokenizer")
    return ids
