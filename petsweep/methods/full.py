"""Full fine-tuning: every backbone parameter is trained (the reference point of every PET curve)."""

from dataclasses import dataclass

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod, backbone_params


@dataclass
class FullConfig(MethodConfig):
    lr: float = 5e-5


@METHODS.register("full")
class FullMethod(PETMethod):
    Config = FullConfig
    no_peft_form = "it trains every backbone weight in place: --format merged is its export"
    trains_every_weight = True
    names_a_budget = False

    def attach(self, model, ctx):
        return Attached(model, [self.group(p for _, p in backbone_params(model, ctx))])
