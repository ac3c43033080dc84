"""BitFit: train only the bias terms of the backbone (Ben Zaken et al., 2022)."""

from dataclasses import dataclass

from petsweep.errors import ConfigError
from petsweep.methods.base import METHODS, MethodConfig, PETMethod, freeze_all


@dataclass
class BitFitConfig(MethodConfig):
    lr: float = 2e-3


@METHODS.register("bitfit")
class BitFitMethod(PETMethod):
    Config = BitFitConfig

    def apply(self, model, backbone):
        freeze_all(model)
        biases = [p for n, p in model.named_parameters() if n.endswith(".bias")]
        if not biases:
            # T5 and Llama have no biases; adding them changes the architecture (a later method option).
            raise ConfigError("method", "bitfit", f"backbone {backbone.name} has no bias parameters to tune")
        for p in biases:
            p.requires_grad_(True)
        return model
