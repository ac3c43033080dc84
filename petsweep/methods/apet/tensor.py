"""APET at tensor granularity: the PET_Scaling code's selection, without its dependence on DeepSpeed ZeRO-3.

Candidates are whole tensors. A delta pool of units (LoRA r=8 on q and v: A and B; Houlsby adapters of
bottleneck 24: down and up, weights and biases) is attached next to an inner pool (every backbone tensor;
never the task head). A generator seeded with K x seed shuffles the units, then the inner tensors.
- K is split between the pools as the seed does: floor(delta_fraction x K) and floor((1 - delta_fraction) x K)
  (apet.split=floor; round gives the delta pool round(delta_fraction x K) and the inner pool the rest).
- The delta half (`delta_fraction` of K) is filled greedily: a unit whose first tensor fits in what is left is
  taken whole, so the half can be overshot by the rest of the unit.
- The inner half is filled greedily with whole tensors that fit, so it never overshoots.
Unpicked LoRA units are no-ops (B = 0, frozen). Unpicked adapters are made no-ops by zeroing their up
projection. The achieved count is recorded and may differ from K.
"""

from __future__ import annotations

import math
import random

import torch

from petsweep.methods.base import backbone_params, build_method
from petsweep.spec.errors import ConfigError


def _units(attached, sizes: int) -> list[list[torch.nn.Parameter]]:
    params = [p for g in attached.groups for p in g.params]
    return [params[i : i + sizes] for i in range(0, len(params), sizes)]


SEED_BIASED = ["q", "k", "v", "o", "cross_q", "cross_k", "cross_v", "cross_o", "ffn_in", "ffn_out"]


def add_zero_biases(model, ctx) -> None:
    """PET_Scaling's T5 (its modeling_t5.py: bias=True on q, k, v, o, the FFN and lm_head) on a bias-free
    backbone: a zero bias on every such Linear that has none (the model computes what it did). Norms get none:
    the seed's T5LayerNorm has no bias (OpenDelta's BitFit, method.add_biases, adds those)."""
    from torch import nn

    from petsweep.methods.base import target_modules
    from petsweep.methods.bitfit import _linear_bias

    names = [n for n in SEED_BIASED if n in ctx.backbone.module_map().modules]
    _, modules, _ = target_modules(model, ctx, names, "apet.pool")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for module in [m for _, m in modules] + ([head] if isinstance(head, nn.Linear) else []):
        if isinstance(module, nn.Linear) and module.bias is None:
            _linear_bias(module)


def pool_budgets(k: int, spec) -> tuple[int, int]:
    """(delta pool's share, inner pool's share) of budget `k` (apet.split)."""
    share = spec.delta_fraction if spec.include_delta_pool else 0.0
    if spec.split == "floor":  # PET_Scaling: inner_allowed = delta_allowed = allowed_num // 2
        return math.floor(k * share + 1e-9), math.floor(k * (1 - share) + 1e-9)
    delta = round(k * share)  # round: runs before apet.split
    return delta, k - delta


def seed_biases(model, ctx, spec) -> None:
    """pool=seed: the seed T5's zero biases (apet.zero_biases: on T5 only, or every bias-free backbone). They
    are inner candidates, so they count among the eligible scalars (the record, and K of scale=ratio)."""
    if spec.pool == "seed" and (spec.zero_biases == "every" or ctx.backbone.model_type == "t5"):
        add_zero_biases(model, ctx)


def select(model, ctx, spec, k: int):
    """(picked parameters, the adapter units left out) for budget `k`; seed_biases(model, ...) has run."""
    lora_targets = ["q", "v"]
    if spec.pool == "seed":
        if "cross_q" in ctx.backbone.module_map().modules:  # the seed's LoRA sits in every T5Attention
            lora_targets += ["cross_q", "cross_v"]
    inner = [p for _, p in backbone_params(model, ctx)]  # before the delta pool is attached
    units = []
    if spec.include_delta_pool:
        units += _units(build_method({"name": "lora", "r": 8, "targets": lora_targets}).attach(model, ctx), 2)
        adapters = _units(build_method({"name": "adapter", "bottleneck": 24}).attach(model, ctx), 4)
        units += adapters
    else:
        adapters = []
    rng = random.Random(k * spec.seed)
    rng.shuffle(units)
    rng.shuffle(inner)
    delta_left, inner_left = pool_budgets(k, spec)
    picked, taken = [], set()
    for unit in units:
        if delta_left <= 0:
            break
        if unit[0].numel() <= delta_left:
            picked += unit
            taken.add(id(unit[0]))
            delta_left -= sum(p.numel() for p in unit)
    for tensor in inner:
        if tensor.numel() <= inner_left:
            picked.append(tensor)
            inner_left -= tensor.numel()
    if not picked:
        smallest = min(p.numel() for p in [*inner, *(u[0] for u in units)])
        raise ConfigError(
            "apet.scale",
            spec.scale,
            f"K = {k:,} is smaller than the smallest candidate tensor "
            f"({smallest:,} scalars): tensor granularity would train nothing",
        )
    left_out = [u for u in adapters if id(u[0]) not in taken]
    return picked, left_out


def silence(adapter_units) -> None:
    """Unpicked adapters must not change the model: a zero up projection makes each the identity."""
    with torch.no_grad():
        for _, _, up_weight, up_bias in adapter_units:
            up_weight.zero_()
            up_bias.zero_()
