"""Prefix tuning (Li & Liang, 2021): `length` trainable key and value vectors in front of the keys and values
of every self-attention layer, directly or through a reparameterisation MLP used while training.

The prefixes enter the model as a pre-filled key/value cache (`past_key_values`), as peft does, but through
hooks on the model instead of peft's wrapper (which renames the model and copies its head):

- a forward pre-hook builds the cache from the trained parameters for each batch and extends the attention
  mask over the prefix; outputs keep the bare model's shapes (a cache adds keys, not output positions);
- `generate` decodes greedily through that hooked forward (layers/decoding.py), returning what the bare
  model's generate returns.

Placement (`placement`): encoders and decoders get a prefix in every layer's self-attention, and only the
default `decoder` is taken there (`paper` would compute the same thing under a second run id, so it is
refused in one line). On encoder-decoders (T5, BART):

- `decoder` (the default; peft's placement): the decoder's self-attention in every decoder layer, not the
  encoder nor cross-attention (one prefix set per decoder layer, every one trained; peft's default for seq2seq
  adds a second set that is never used);
- `paper` (Li & Liang 2021, as they prefixed BART): the encoder's self-attention, the decoder's
  self-attention and the decoder's cross-attention, each with its own prefix set per layer. All three enter
  as caches, none through the key/value projections: the decoder's self-attention prefix is the pre-filled
  cache as under `decoder`; the cross-attention's sets are the cross-attention part of that cache (the
  encoder output's keys and values are appended behind them in the first forward and cached for decoding as
  the model caches them); each encoder self-attention gets a one-layer cache holding its set (a forward
  pre-hook on that attention). Pre-hooks on the encoder's and the cross-attentions widen their masks by
  `length` visible columns; queries are untouched. Parameters: three groups as Li & Liang's (wte/
  control_trans, wte2/control_trans2, wte_enc/control_trans_enc): `prefix.embedding` (and `prefix.mlp`) make
  the decoder self-attention's sets, named as under `decoder`; `prefix.cross.*` the cross-attention's;
  `prefix.encoder.*` the encoder's, sized with the encoder's heads and head width (they may differ from the
  decoder's). Positions: BART's encoder keeps its learned positions; BART's decoder counts its positions from
  0 (Li & Liang's; a pre-hook on its `embed_positions` subtracts `length`; see Positions). T5's relative
  position bias treats every prefix, as under `decoder`, as the `length` positions just before the input: the
  encoder's real tokens keep the bias they had among themselves, a prefix vector p (of `length`) seen from
  token i gets the bias of distance i + length - p; cross-attention has no position bias in T5.
  A run's config.yaml names its placement; result.json's config (the identity) names `paper` and leaves
  the default out. Known limits: the decoder called alone (model.get_decoder()(...)) gets no prefix cache and
  so fails under `paper` (the encoder alone works); T5 left-padded encoder rows differ from the row alone
  (the prefix is seen as the positions before the padding), which petsweep never does: it pads
  encoder-decoder inputs on the right.

Positions: under `decoder` (and on encoders and decoders), as in peft, the decoder's input positions start
after the prefix (the cache holds `length` keys and transformers counts positions from the cache's length),
so `length + task.max_length` must fit the model's positions; under `paper` BART's decoder positions start at
0 as in Li & Liang's code (the check stays the same, conservatively).

Count: N x 2 x length x kv_width (N prefix sets: the prefixed layers, encoder layers + 2 x decoder layers
under `paper`; kv_width = key/value heads x head width, smaller than d under grouped-query attention; under
`paper` the encoder's sets use the encoder's). With `projection: m`, per group: length x d + (d x m + m) +
(m x W + W), W = its sets x 2 x kv_width (peft's prefix_projection form); one group under `decoder`, three
under `paper` (decoder self-attention, cross-attention, encoder: Li & Liang's three embedding + MLP pairs).
Li & Liang's XSUM setting on bart-large (length 200, projection 800) is 3 x (200 x 1024 + 1024 x 800 + 800
+ 800 x 24576 + 24576) = 62,130,528, their trainable count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod
from petsweep.methods.prompt import check_positions
from petsweep.spec.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class PrefixConfig(MethodConfig):
    """Prefix's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        length: prefix vectors per layer (virtual tokens).
        projection: width of the reparameterisation MLP (embedding -> Linear -> tanh -> Linear); null
            trains the prefixes directly.
        init_std: the prefixes (or the MLP's input embedding) start N(0, init_std).
        placement: where the prefixes go on encoder-decoders (T5, BART): `decoder` (peft's: the decoder's
            self-attention only) or `paper` (Li & Liang's: encoder self-attention, decoder self-attention and
            cross-attention, a set each per layer). Encoders and decoders take `decoder` only (every layer).
    """

    lr: float = 1e-2
    length: int = 6
    projection: int | None = None
    init_std: float = 1.0
    placement: str = "decoder"

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.length, int) or self.length < 1:
            raise ConfigError("method.length", self.length, "must be a positive number of prefix vectors")
        if self.projection is not None and (not isinstance(self.projection, int) or self.projection < 1):
            raise ConfigError("method.projection", self.projection, "must be null or a positive MLP width")
        if not self.init_std > 0:
            raise ConfigError("method.init_std", self.init_std, "must be positive")
        if self.placement not in PLACEMENTS:
            raise ConfigError("method.placement", self.placement, f"choose from: {', '.join(PLACEMENTS)}")


PLACEMENTS = ("decoder", "paper")
# model_type: (encoder self-attention, decoder cross-attention, the attention's mask argument): the attentions
# `paper` hooks, by their module names
PAPER_SITES = {
    "t5": ("SelfAttention", "EncDecAttention", "mask"),
    "mt5": ("SelfAttention", "EncDecAttention", "mask"),
    "bart": ("self_attn", "encoder_attn", "attention_mask"),
}


def kv_shape(config, family: str, side: str = "decoder") -> tuple[int, int, int]:
    """(prefixed layers, key/value heads, head width) of a transformers config; on encoder-decoders those of
    the decoder (its self- and cross-attention) or, with side="encoder", of the encoder's self-attention."""
    if family == "encoder_decoder":
        if side == "encoder":
            layers = getattr(config, "encoder_layers", None) or getattr(config, "num_layers", None)
            heads = getattr(config, "encoder_attention_heads", None) or config.num_attention_heads
        else:
            layers = getattr(config, "num_decoder_layers", None) or getattr(config, "decoder_layers", None)
            heads = getattr(config, "decoder_attention_heads", None) or config.num_attention_heads
    else:
        layers, heads = config.num_hidden_layers, config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = (
        getattr(config, "d_kv", None) or getattr(config, "head_dim", None) or config.hidden_size // heads
    )
    return layers or config.num_hidden_layers, kv_heads, head_dim


def _widen_mask(mask, length: int):
    """An attention's mask (as the attention receives it) with `length` visible key columns in front."""
    import torch

    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):  # flex attention's BlockMask
        kind = type(mask).__name__
        raise ConfigError("method.placement", "paper", f"needs sdpa or eager attention masks, not {kind}")
    if mask.dtype == torch.bool:
        fill = True  # True attends
    elif mask.dtype.is_floating_point:
        fill = 0.0  # additive: 0 attends
    else:
        fill = 1  # a 2D padding mask (flash attention): 1 attends
    return torch.cat([mask.new_full((*mask.shape[:-1], length), fill), mask], -1)


def _sites(model, model_type: str) -> tuple[list[nn.Module], list[nn.Module]]:
    """(encoder self-attentions, decoder cross-attentions) of an encoder-decoder, in layer order."""
    encoder_name, cross_name, _ = PAPER_SITES[model_type]

    def named(stack, name):
        return [m for n, m in stack.named_modules() if n.rpartition(".")[2] == name]

    return named(model.get_encoder(), encoder_name), named(model.get_decoder(), cross_name)


def _ones_before(mask: torch.Tensor | None, length: int, batch: int, seq: int, device) -> torch.Tensor:
    import torch

    if mask is None:
        mask = torch.ones(batch, seq, dtype=torch.long, device=device)
    return torch.cat([mask.new_ones(mask.shape[0], length), mask], 1)


@METHODS.register("prefix")
class PrefixMethod(PETMethod):
    budget_knobs = ("length",)
    budget_strategy = "length"
    budget_replaces = ("length",)
    Config = PrefixConfig
    no_peft_form = None  # peft's prefix tuning, under placement=decoder (peft's own placement)
    peft_rank = 3

    def peft_refusal(self, exports):
        if self.config.placement != "paper":
            return None
        return ConfigError(
            "method.placement",
            "paper",
            "peft's prefix tuning has no place for the encoder's and cross-attention's prefixes (it prefixes "
            f"the decoder's self-attention only): no peft form ({exports} with placement=decoder); share "
            "pet_weights.safetensors and config.yaml",
        )

    def peft_config(self, tuned, saved, head_modules, common):
        import peft

        # the reparameterisation MLP (if any) collapsed into the prefixes it computes, as peft saves it
        return peft.PrefixTuningConfig(
            num_virtual_tokens=self.config.length,
            prefix_projection=False,
            num_transformer_submodules=1,
            **common,
        )

    def fill_peft(self, peft_model, tuned, saved):
        prefix = tuned.prefix
        flat = prefix.mlp(prefix.embedding) if prefix.mlp is not None else prefix.embedding
        peft_model.prompt_encoder["default"].embedding.weight.copy_(flat)
        return {n for n in saved if n.startswith("prefix.")}

    def check(self, backbone) -> None:
        super().check(backbone)
        if self.config.placement != "paper":
            return
        if backbone.family != "encoder_decoder":
            raise ConfigError(
                "method.placement",
                "paper",
                f"the paper's placement (encoder, decoder and cross-attention) is for encoder-decoders; "
                f"{backbone.name} is {backbone.family}, where placement=decoder already prefixes every layer",
            )
        if backbone.model_type not in PAPER_SITES:
            raise ConfigError(
                "method.placement",
                "paper",
                f"is implemented for {', '.join(sorted(PAPER_SITES))}; {backbone.name} is "
                f"{backbone.model_type} (choose placement=decoder)",
            )

    def attach(self, model, ctx):
        from petsweep.methods.layers.decoding import greedy_generate
        from petsweep.methods.layers.prefix import PrefixEncoder

        c = self.config
        self.check(ctx.backbone)
        encoder_decoder = ctx.backbone.family == "encoder_decoder"
        check_positions(model, ctx, c.length, "prefix")
        embedding = model.get_input_embeddings()
        shape = kv_shape(model.config, ctx.backbone.family)
        paper = _sites(model, ctx.backbone.model_type) if c.placement == "paper" else None
        groups = {}
        if paper is not None:  # a group each: decoder self-attention, cross-attention, encoder self-attention
            encoder_sites, cross_sites = paper
            encoder_shape = kv_shape(model.config, ctx.backbone.family, side="encoder")
            groups = dict(
                cross=(len(cross_sites), *shape[1:]), encoder=(len(encoder_sites), *encoder_shape[1:])
            )
        width = embedding.weight.shape[1]
        model.add_module("prefix", PrefixEncoder(c, width, shape, embedding.weight, **groups))
        prefix = model.prefix
        state: dict = {}  # this forward's prefix sets, made once by the pre-hook, read by the paper's hooks

        def before(module, args, kwargs):
            state.clear()
            if kwargs.get("past_key_values") is not None:
                return args, kwargs  # generate's later steps, or a cache handed in
            inputs = kwargs.get("input_ids")
            if inputs is None:
                inputs = kwargs.get("inputs_embeds")
            if inputs is None and encoder_decoder and kwargs.get("encoder_outputs") is not None:
                inputs = kwargs["encoder_outputs"][0]  # an encoder output handed in: its rows
            if inputs is None:
                inputs = kwargs["inputs_embeds"]  # the model's own error where there is no input
            batch, seq = inputs.shape[:2]
            own, cross, _ = state["sets"] = prefix.groups()
            kwargs["past_key_values"] = prefix.cache(
                batch, model.config, encoder_decoder, embedding.weight.dtype, own, cross
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
        model.register_forward_hook(lambda module, args, out: state.clear())
        if paper is not None:
            _hook_paper_sites(ctx.backbone.model_type, prefix, state, *paper)
            if ctx.backbone.model_type == "bart":
                _zero_based_positions(model.get_decoder().embed_positions, c.length)
        if hasattr(model, "generate"):
            model.generate = greedy_generate(model, encoder_decoder)
        return Attached(model, [self.group(prefix.parameters())])


def _zero_based_positions(positions: nn.Module, length: int) -> None:
    """BART's decoder under `paper`: its learned positions start at 0, as in Li & Liang's BART, not after the
    prefix. transformers gives the decoder's tokens positions arange(seq) + the cache's length, and the cache
    holds the `length` prefix keys: a pre-hook on the decoder's `embed_positions` subtracts `length` (while
    decoding with a cache, the new token's position is then the tokens before it, Li & Liang's seq_len - 1).
    A cache shorter than the prefix (the decoder called without the model's cache) is left as it is."""

    def hook(module, args, kwargs):
        ids = kwargs.get("position_ids")
        past = args[1] if len(args) > 1 else kwargs.get("cache_length", 0)
        if ids is not None and past >= length:
            kwargs["position_ids"] = ids - length
        return args, kwargs

    positions.register_forward_pre_hook(hook, with_kwargs=True)


def _hook_paper_sites(model_type, prefix, state, encoder_sites, cross_sites) -> None:
    """The paper's encoder and cross-attention prefixes: every one of these attentions gets its mask widened
    over `length` prefix columns; encoder self-attention i gets set i of the encoder group as a cache
    of its own (as a decoder's self-attention holds its prefix: T5 then biases the prefix as the positions
    before the input); the cross-attention sets are in the model's cache (the model's pre-hook)."""
    from transformers.cache_utils import DynamicCache

    from petsweep.methods.layers.prefix import filled

    length = prefix.length
    mask_key = PAPER_SITES[model_type][2]

    def widen(module, args, kwargs):
        kwargs[mask_key] = _widen_mask(kwargs.get(mask_key), length)
        return args, kwargs

    def encoder_prefix(index: int):
        def hook(module, args, kwargs):
            # the sets the model's forward made; made here where the encoder is called on its own
            sets = state["sets"][2] if "sets" in state else prefix.encoder()
            hidden = args[0] if args else kwargs["hidden_states"]
            sets = sets[index : index + 1]
            kwargs["cache"] = filled(DynamicCache(), sets, hidden.shape[0], hidden.dtype, [module.layer_idx])
            return widen(module, args, kwargs)

        return hook

    for attention in cross_sites:
        attention.register_forward_pre_hook(widen, with_kwargs=True)
    for i, attention in enumerate(encoder_sites):
        attention.register_forward_pre_hook(encoder_prefix(i), with_kwargs=True)
