"""LN tuning: train only the backbone's normalisation layers (LayerNorm gains and biases; RMSNorm gains).

petsweep unfreezes the norms in place rather than through peft's LNTuningConfig, which copies and renames
them (and has no default targets for BERT/RoBERTa). Which modules are norms comes from the architecture map.
"""

from dataclasses import dataclass

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod, target_modules
from petsweep.spec.errors import ConfigError


@dataclass
class LNConfig(MethodConfig):
    lr: float = 2e-3


@METHODS.register("ln")
class LNMethod(PETMethod):
    Config = LNConfig
    fuses = True  # each run's own copy of the norms it trains, on its rows
    no_peft_form = None  # peft's LNTuningConfig, on the norms the run trained
    peft_rank = 4

    def peft_config(self, tuned, saved, head_modules, common):
        import re

        import peft

        norms = sorted({key.rpartition(".")[0] for key in saved if key.split(".")[0] not in head_modules})
        return peft.LNTuningConfig(target_modules="|".join(map(re.escape, norms)), **common)

    def attach(self, model, ctx):
        _, norms, _ = target_modules(model, ctx, ["norms"], "method")
        params = [p for _, module in norms for p in module.parameters(recurse=False) if not ctx.is_head(p)]
        if not params:
            raise ConfigError("method", "ln", f"backbone {ctx.backbone.name} has no normalisation parameters")
        return Attached(model, [self.group(params)])
