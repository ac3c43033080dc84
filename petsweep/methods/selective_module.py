"""Selective-module tuning: a seeded random choice of whole modules (linears and norms) across all blocks,
trained in full until a parameter budget is met (the Delta Tuning study's "randomly select some modules").

The candidates are every Linear (or GPT-2 Conv1D) and norm module inside a block of the chosen stacks.
They are visited in a seeded random order and taken while they fit the budget; the budget is a count, a
fraction of the candidates' parameters, or by default the last block's count (a like-for-like comparison
with last-layer tuning). The selection depends only on the model's structure and the seed, so it is the
same on the meta device and for real.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod
from petsweep.methods.blocks import STACKS, blocks_by_stack, chosen_stacks
from petsweep.spec.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


@dataclass
class SelectiveModuleConfig(MethodConfig):
    """SelectiveModule's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        budget: trainable parameters to select at most (null: see fraction).
        fraction: budget as a fraction of the candidates' parameters (null with budget null: the last block's
            count).
        selection_seed: seed of the random order (the run seed stays for initialisation and data order).
        stack: auto | encoder | decoder | both (as last_layer).
    """

    lr: float = 1e-4
    budget: int | None = None
    fraction: float | None = None
    selection_seed: int = 0
    stack: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        if self.budget is not None and self.fraction is not None:
            raise ConfigError(
                "method.fraction", self.fraction, "give method.budget or method.fraction, not both"
            )
        if self.budget is not None and (not isinstance(self.budget, int) or self.budget < 1):
            raise ConfigError("method.budget", self.budget, "must be a positive number of parameters")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError("method.fraction", self.fraction, "must be in (0, 1]")
        if self.stack not in STACKS:
            raise ConfigError("method.stack", self.stack, f"choose one of: {', '.join(STACKS)}")


def _candidates(blocks, norm_pattern: str) -> list[tuple[str, nn.Module]]:
    from torch.nn import Linear

    found = []
    for block_name, block in blocks:
        for name, module in block.named_modules():
            full = f"{block_name}.{name}" if name else block_name
            is_linear = isinstance(module, Linear) or type(module).__name__ == "Conv1D"
            if is_linear or re.fullmatch(norm_pattern, full):
                found.append((full, module))
    return found


@METHODS.register("selective_module")
class SelectiveModuleMethod(PETMethod):
    budget_knobs = ("budget",)  # the bound its fill stays within
    budget_strategy = "bound"
    budget_replaces = ("budget", "fraction")
    budget_clears = ("fraction",)
    Config = SelectiveModuleConfig
    no_peft_form = "it trains backbone weights in place: --format merged is its export"

    def attach(self, model, ctx):
        c = self.config
        stacks = blocks_by_stack(model, ctx)
        chosen = chosen_stacks(stacks, c.stack, "method.stack")
        norms = ctx.backbone.module_map().modules.get("norms", r"(?!)")
        candidates = [m for kind in chosen for m in _candidates(stacks[kind], norms)]
        sizes = [sum(p.numel() for p in m.parameters(recurse=False)) for _, m in candidates]
        if c.budget is not None:
            budget = c.budget
        elif c.fraction is not None:
            budget = int(round(c.fraction * sum(sizes)))
        else:
            budget = sum(p.numel() for p in stacks[chosen[0]][-1][1].parameters())
        if budget < min(sizes):
            raise ConfigError(
                "method.budget",
                budget,
                f"smaller than the smallest candidate module ({min(sizes):,} parameters)",
            )
        import numpy as np

        picked, used = [], 0
        for index in np.random.default_rng(c.selection_seed).permutation(len(candidates)):
            if used + sizes[index] <= budget:
                picked.append(candidates[index][1])
                used += sizes[index]
        params = [p for module in picked for p in module.parameters(recurse=False) if not ctx.is_head(p)]
        return Attached(model, [self.group(params)])
