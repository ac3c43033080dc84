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

    def attach(self, model, ctx):
        _, norms, _ = target_modules(model, ctx, ["norms"], "method")
        params = [p for _, module in norms for p in module.parameters(recurse=False) if not ctx.is_head(p)]
        if not params:
            raise ConfigError("method", "ln", f"backbone {ctx.backbone.name} has no normalisation parameters")
        return Attached(model, [self.group(params)])
