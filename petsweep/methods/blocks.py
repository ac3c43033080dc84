"""The transformer blocks of a model, by stack, from the architecture map (last-layer, selective tuning)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from petsweep.spec.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

STACKS = ("auto", "encoder", "decoder", "both")


def blocks_by_stack(model: nn.Module, ctx) -> dict[str, list[tuple[str, nn.Module]]]:
    """{"encoder" | "decoder": [(name, block) in order]}: each stack of the model and its blocks."""
    pattern = ctx.backbone.module_map().modules.get("blocks")
    if pattern is None:
        raise ConfigError(
            "backbone.model_type",
            ctx.backbone.model_type,
            "has no `blocks` entry in the "
            "architecture map (petsweep/spec/architectures.py, or the YAML's modules)",
        )
    stacks: dict[str, list[tuple[int, str, nn.Module]]] = {}
    for name, module in model.named_modules():
        found = re.fullmatch(pattern, name)
        if found:
            path = found.group(1)
            kind = "decoder" if ctx.backbone.family == "decoder" or "decoder" in path else "encoder"
            stacks.setdefault(kind, []).append((int(found.group(2)), name, module))
    return {kind: [(n, m) for _, n, m in sorted(items, key=lambda t: t[0])] for kind, items in stacks.items()}


def chosen_stacks(stacks: dict, stack: str, key: str) -> list[str]:
    """Which stacks a method acts on: auto = the encoder where there is one, else the decoder."""
    if stack == "auto":
        return ["encoder"] if "encoder" in stacks else ["decoder"]
    wanted = ["encoder", "decoder"] if stack == "both" else [stack]
    missing = [s for s in wanted if s not in stacks]
    if missing:
        raise ConfigError(
            key, stack, f"the model has no {missing[0]} stack; it has: {', '.join(sorted(stacks))}"
        )
    return wanted
