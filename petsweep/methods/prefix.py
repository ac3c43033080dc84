"""Prefix tuning (Li & Liang, 2021): `length` trainable key and value vectors in front of the keys and values
of every self-attention layer, directly or through a reparameterisation MLP used while training.

The prefixes enter the model as a pre-filled key/value cache (`past_key_values`), as peft does, but through
hooks on the model instead of peft's wrapper (which renames the model and copies its head):

- a forward pre-hook builds the cache from the trained parameters for each batch and extends the attention
  mask over the prefix; outputs keep the bare model's shapes (a cache adds keys, not output positions);
- `generate` decodes greedily through that hooked forward (methods/decoding.py), returning what the bare
  model's generate returns.

Placement: encoders and decoders get a prefix in every layer. On encoder-decoders (T5, BART) the prefix
reaches the decoder's self-attention in every decoder layer, not the encoder nor cross-attention: that is
peft's placement (with one prefix set per decoder layer, every one trained; peft's default for seq2seq
adds a second set that is never used). Positions: as in peft, the input's positions start after the
prefix, so `length + task.max_length` must fit the model's positions.

Count: N x 2 x length x kv_width (N prefixed layers; kv_width = key/value heads x head width, smaller than
d under grouped-query attention). With `projection: m`: length x d + (d x m + m) + (m x W + W), W = N x 2 x
kv_width (peft's prefix_projection form).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from petsweep.errors import ConfigError
from petsweep.methods.base import METHODS, Attached, MethodConfig, PETMethod
from petsweep.methods.decoding import greedy_generate
from petsweep.methods.prompt import check_positions


@dataclass
class PrefixConfig(MethodConfig):
    """Prefix's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        length: prefix vectors per layer (virtual tokens).
        projection: width of the reparameterisation MLP (embedding -> Linear -> tanh -> Linear); null
            trains the prefixes directly.
        init_std: the prefixes (or the MLP's input embedding) start N(0, init_std).
    """

    lr: float = 1e-2
    length: int = 6
    projection: int | None = None
    init_std: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.length, int) or self.length < 1:
            raise ConfigError("method.length", self.length, "must be a positive number of prefix vectors")
        if self.projection is not None and (not isinstance(self.projection, int) or self.projection < 1):
            raise ConfigError("method.projection", self.projection, "must be null or a positive MLP width")
        if not self.init_std > 0:
            raise ConfigError("method.init_std", self.init_std, "must be positive")


def kv_shape(config, family: str) -> tuple[int, int, int]:
    """(prefixed layers, key/value heads, head width) of a transformers config."""
    if family == "encoder_decoder":
        layers = getattr(config, "num_decoder_layers", None) or getattr(config, "decoder_layers", None)
        heads = getattr(config, "decoder_attention_heads", None) or config.num_attention_heads
    else:
        layers, heads = config.num_hidden_layers, config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = (
        getattr(config, "d_kv", None) or getattr(config, "head_dim", None) or config.hidden_size // heads
    )
    return layers or config.num_hidden_layers, kv_heads, head_dim


class PrefixEncoder(nn.Module):
    """The trained prefixes; `forward()` returns them as (layers, 2, kv_heads, length, head_dim)."""

    def __init__(self, c: PrefixConfig, width: int, shape: tuple[int, int, int], like: torch.Tensor):
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

    def cache(self, batch: int, config, encoder_decoder: bool, dtype: torch.dtype):
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        cache = DynamicCache(config=config)
        for layer, (keys, values) in enumerate(self().to(dtype)):
            cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), layer)
        return EncoderDecoderCache(cache, DynamicCache(config=config)) if encoder_decoder else cache


def _ones_before(mask: torch.Tensor | None, length: int, batch: int, seq: int, device) -> torch.Tensor:
    if mask is None:
        mask = torch.ones(batch, seq, dtype=torch.long, device=device)
    return torch.cat([mask.new_ones(mask.shape[0], length), mask], 1)


@METHODS.register("prefix")
class PrefixMethod(PETMethod):
    Config = PrefixConfig

    def attach(self, model, ctx):
        c = self.config
        encoder_decoder = ctx.backbone.family == "encoder_decoder"
        check_positions(model, ctx, c.length, "prefix")
        embedding = model.get_input_embeddings()
        shape = kv_shape(model.config, ctx.backbone.family)
        model.add_module("prefix", PrefixEncoder(c, embedding.weight.shape[1], shape, embedding.weight))
        prefix = model.prefix

        def before(module, args, kwargs):
            if kwargs.get("past_key_values") is not None:
                return args, kwargs  # generate's later steps, or a cache handed in
            inputs = kwargs.get("input_ids")
            if inputs is None:
                inputs = kwargs["inputs_embeds"]
            batch, seq = inputs.shape[:2]
            kwargs["past_key_values"] = prefix.cache(
                batch, model.config, encoder_decoder, embedding.weight.dtype
            )
            kwargs["use_cache"] = True
            if encoder_decoder:
                if kwargs.get("decoder_attention_mask") is not None:
                    mask = kwargs["decoder_attention_mask"]
                    kwargs["decoder_attention_mask"] = _ones_before(
                        mask, c.length, batch, mask.shape[1], mask.device
                    )
            else:
                kwargs["attention_mask"] = _ones_before(
                    kwargs.get("attention_mask"), c.length, batch, seq, inputs.device
                )
            return args, kwargs

        model.register_forward_pre_hook(before, with_kwargs=True)
        if hasattr(model, "generate"):
            model.generate = greedy_generate(model, encoder_decoder)
        return Attached(model, [self.group(prefix.parameters())])
