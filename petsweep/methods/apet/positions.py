"""APET's positions: which scalars of the eligible tensors a budget of K trains (the `apet` group's schema,
ApetSpec and Budget, is petsweep/spec/apet.py, which needs no torch).

Positions are K distinct flat indices drawn uniformly over the concatenation of every eligible tensor (model
order) by a generator seeded with `seed`, so the same (backbone, K, seed) gives the same positions on any
machine. Large tensors receive proportionally more positions: that is APET's "arbitrary positions".
"""

from __future__ import annotations

import hashlib
import re

import torch
from torch import nn

from petsweep.spec.apet import MAX_SEED, ApetSpec, Budget
from petsweep.spec.errors import ConfigError

__all__ = ["MAX_SEED", "ApetSpec", "Budget", "digest", "eligible_tensors", "place", "sample_positions"]


def eligible_tensors(model: nn.Module, ctx, spec: ApetSpec) -> list[tuple[str, nn.Module, str, torch.Tensor]]:
    """(name, owning module, attribute, tensor) of every eligible parameter, in the model's order."""
    patterns = [re.compile(p) for p in spec.eligible or []]
    blocks = re.compile(ctx.backbone.module_map().modules["blocks"])

    def keep(name: str) -> bool:
        if patterns:
            return any(p.fullmatch(name) for p in patterns)
        inside = blocks.match(name)  # a block's own prefix, with something of the block after it
        return inside is not None and inside.end() < len(name)

    found = []
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and not spec.eligible:
            continue  # no embeddings by default (T5's relative-position buckets too: most go unused)
        for attr, param in module.named_parameters(recurse=False):
            name = f"{module_name}.{attr}" if module_name else attr
            if not ctx.is_head(param) and keep(name):
                found.append((name, module, attr, param))
    if not found:
        raise ConfigError("apet.eligible", spec.eligible, f"matches no parameter of {ctx.backbone.name}")
    return found


def sample_positions(total: int, k: int, seed: int) -> torch.Tensor:
    """K distinct flat indices in [0, total), uniformly, from a generator seeded with `seed` (sorted)."""
    generator = torch.Generator().manual_seed(seed)
    if k * 2 > total:  # most of the elements: a permutation's prefix
        return torch.randperm(total, generator=generator)[:k].sort().values
    chosen = torch.empty(0, dtype=torch.long)
    while chosen.numel() < k:  # draws with repeats, first occurrences kept in draw order
        draws = torch.randint(0, total, (2 * (k - chosen.numel()) + 16,), generator=generator)
        merged = torch.cat([chosen, draws])
        unique, inverse = torch.unique(merged, return_inverse=True)
        first = torch.full((unique.numel(),), merged.numel()).scatter_reduce(
            0, inverse, torch.arange(merged.numel()), reduce="amin"
        )
        chosen = merged[first.sort().values][:k]
    return chosen.sort().values


def place(sizes: list[int], k: int, seed: int) -> list[torch.Tensor]:
    """The K positions over tensors of `sizes`: per tensor, its local flat indices (possibly empty)."""
    positions = sample_positions(sum(sizes), k, seed)  # sorted: each tensor's positions are one run of them
    bounds = torch.tensor([0, *sizes]).cumsum(0)
    per_tensor = torch.bincount(torch.searchsorted(bounds[1:], positions, right=True), minlength=len(sizes))
    return [part - start for part, start in zip(positions.split(per_tensor.tolist()), bounds[:-1])]


def digest(names: list[str], local: list[torch.Tensor]) -> str:
    """sha256 of the chosen positions (tensor name and its indices): equal digests, equal positions."""
    h = hashlib.sha256()
    for name, idx in zip(names, local):
        if idx.numel():
            h.update(name.encode() + b"\0" + idx.to(torch.int64).numpy().tobytes())
    return h.hexdigest()
