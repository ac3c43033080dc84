"""BitFit: train only the bias terms of the backbone (Ben Zaken et al., 2022)."""

from dataclasses import dataclass

from petsweep.errors import ConfigError
from petsweep.methods.base import METHODS, Attached, MethodConfig, PETMethod, backbone_params


@dataclass
class BitFitConfig(MethodConfig):
    lr: float = 2e-3


@METHODS.register("bitfit")
class BitFitMethod(PETMethod):
    Config = BitFitConfig

    def attach(self, model, ctx):
        biases = [p for n, p in backbone_params(model, ctx) if n.endswith(".bias")]
        if not biases:
            # T5 and Llama have no biases; adding them changes the architecture (a later method option).
            raise ConfigError("method", "bitfit", f"backbone {ctx.backbone.name} has no bias parameters to tune")
        return Attached(model, [self.group(biases)])
