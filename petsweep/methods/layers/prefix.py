"""The trained prefixes (petsweep.methods.prefix attaches them)."""

from __future__ import annotations

import torch
from torch import nn


class PrefixSets(nn.Module):
    """One group of trained prefix sets (`shape`: sets, kv_heads, head_dim): `embedding` directly, or
    `embedding` through its own `mlp`; `forward()` returns them as (sets, 2, kv_heads, length, head_dim)."""

    def __init__(self, c, width: int, shape: tuple[int, int, int], like: torch.Tensor):
        super().__init__()
        self.shape, self.length = shape, c.length
        out = shape[0] * 2 * shape[1] * shape[2]
        kwargs = dict(device=like.device, dtype=like.dtype)
        self.embedding = nn.Parameter(torch.empty(c.length, width if c.projection else out, **kwargs))
        self.mlp = (
            nn.Sequential(
                nn.Linear(width, c.projection, **kwargs), nn.Tanh(), nn.Linear(c.projection, out, **kwargs)
            )
            if c.projection
            else None
        )
        if like.device.type != "meta":
            nn.init.normal_(self.embedding, std=c.init_std)

    def forward(self) -> torch.Tensor:
        flat = self.mlp(self.embedding) if self.mlp is not None else self.embedding
        layers, heads, head_dim = self.shape
        return flat.view(self.length, layers, 2, heads, head_dim).permute(1, 2, 3, 0, 4)


class PrefixEncoder(PrefixSets):
    """The trained prefixes: the decoder self-attention's sets (every prefixed layer's on encoders and
    decoders) are this module's own `embedding` (and `mlp`), as `forward()` returns them. Under `paper` two
    more groups, each with its own embedding and MLP as Li & Liang's (wte2/control_trans2, wte_enc/
    control_trans_enc): `cross` (the decoder's cross-attention, decoder heads) and `encoder` (the encoder's
    self-attention, encoder heads)."""

    def __init__(self, c, width, shape, like, cross: tuple | None = None, encoder: tuple | None = None):
        super().__init__(c, width, shape, like)
        if cross is not None:
            self.cross = PrefixSets(c, width, cross, like)
            self.encoder = PrefixSets(c, width, encoder, like)

    def groups(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(decoder self-attention sets, cross-attention sets, encoder sets); None where not prefixed."""
        if not hasattr(self, "cross"):
            return self(), None, None
        return self(), self.cross(), self.encoder()

    def cache(self, batch: int, config, encoder_decoder: bool, dtype: torch.dtype, sets=None, cross=None):
        """The prefixes as the model's cache: `sets` (forward()'s output, computed here when None) in front of
        the decoder's self-attention keys and values, `cross` (sets too, or None) in front of the
        cross-attention's (computed from the encoder's output in the first forward, then reused)."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        sets = self() if sets is None else sets
        cache = filled(DynamicCache(config=config), sets, batch, dtype)
        if not encoder_decoder:
            return cache
        crossed = DynamicCache(config=config)
        if cross is None:
            return EncoderDecoderCache(cache, crossed)
        both = EncoderDecoderCache(cache, filled(crossed, cross, batch, dtype))
        # a filled cross-attention layer reads as done (its keys reused as they are): here it holds only the
        # prefix, so the first forward must still add the encoder output's keys and values behind it
        both.is_updated = {layer: False for layer in both.is_updated}
        return both


def filled(cache, sets: torch.Tensor, batch: int, dtype: torch.dtype, layers=None):
    """`cache` with set i's keys and values (one row, expanded to `batch`) as layer i's (or layers[i]'s)."""
    for i, (keys, values) in enumerate(sets.to(dtype)):
        layer = i if layers is None else layers[i]
        cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), layer)
    return cache
