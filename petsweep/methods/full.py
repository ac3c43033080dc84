"""Full fine-tuning: every backbone parameter is trained (the reference point of every PET curve)."""

from dataclasses import dataclass

from petsweep.methods.base import METHODS, MethodConfig, PETMethod


@dataclass
class FullConfig(MethodConfig):
    lr: float = 5e-5


@METHODS.register("full")
class FullMethod(PETMethod):
    Config = FullConfig

    def apply(self, model, backbone):
        for p in model.parameters():
            p.requires_grad_(True)
        return model
