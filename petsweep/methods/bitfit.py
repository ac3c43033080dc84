"""BitFit: train only the bias terms of the backbone (Ben Zaken et al., 2022).

Bias-free backbones (T5, Llama) have none. With `add_biases: true` petsweep adds them as OpenDelta does:
a bias on every self-attention and feed-forward projection, one after every norm, and one on the LM head.
They start at zero, so the model is unchanged at initialisation (OpenDelta draws linear biases like
nn.Linear's default; zero keeps the pretrained function). The APET table's BitFit budgets for T5 v1.1 are
this count (t5-v1_1-small: 121,216). Without the option a bias-free backbone is refused with one line.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod, backbone_params, target_modules
from petsweep.spec.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

PROJECTIONS = ["q", "k", "v", "o", "ffn_in", "ffn_out"]


@dataclass
class BitFitConfig(MethodConfig):
    """BitFit's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        add_biases: on a backbone without biases, add zero biases (projections, norms, LM head) to train.
    """

    lr: float = 2e-3
    add_biases: bool = False


def _add_norm_bias(module, inputs, output):
    return output + module.added_bias.bias


def _linear_bias(module: "nn.Module") -> "nn.Parameter":
    import torch
    from torch import nn

    weight = module.weight
    width = weight.shape[0] if isinstance(module, nn.Linear) else weight.shape[1]  # Conv1D stores (in, out)
    module.bias = nn.Parameter(torch.zeros(width, device=weight.device, dtype=weight.dtype))
    return module.bias


@METHODS.register("bitfit")
class BitFitMethod(PETMethod):
    Config = BitFitConfig
    no_peft_form = "peft has no bias-only tuner"
    fuses = True  # each run's own copy of the modules whose biases it trains, on its rows
    budget_keys = {"add_biases": True}  # as the APET table counts bias-free backbones

    @classmethod
    def trains_alone(cls, values):
        if values.get("add_biases"):
            return "method.add_biases=true trains alone (fused BitFit trains the biases the backbone has)"
        return None

    def attach(self, model, ctx):
        biases = [p for n, p in backbone_params(model, ctx) if n.endswith(".bias")]
        if biases:
            return Attached(model, [self.group(biases)])
        if not self.config.add_biases:
            raise ConfigError(
                "method",
                "bitfit",
                f"backbone {ctx.backbone.name} has no bias parameters to tune; "
                f"method.add_biases=true adds zero biases as OpenDelta does",
            )
        return Attached(model, [self.group(self._add(model, ctx))])

    def _add(self, model, ctx) -> "list[nn.Parameter]":
        from torch import nn

        from petsweep.methods.layers.bitfit import NormBias

        _, projections, _ = target_modules(model, ctx, PROJECTIONS, "method.add_biases")
        added = [_linear_bias(module) for _, module in projections if module.bias is None]
        _, norms, _ = target_modules(model, ctx, ["norms"], "method.add_biases")
        for _, norm in norms:
            norm.add_module("added_bias", NormBias(norm.weight.shape[0], norm.weight))
            norm.register_forward_hook(_add_norm_bias)
            added.append(norm.added_bias.bias)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if isinstance(head, nn.Linear) and head.bias is None:
            added.append(_linear_bias(head))
        return added
