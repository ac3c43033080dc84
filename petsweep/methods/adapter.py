"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021): h <- h + W_up act(W_down h + b_d) + b_u.

Placement (canonical names from the architecture map): Houlsby puts one after the self-attention output
projection (`o`) and one after the FFN output projection (`ffn_out`) of every block; Pfeiffer only after
`ffn_out`. As in OpenDelta, the adapter acts on the projection's output, before the block's residual add and
norm; encoder-decoders get none on cross-attention. Each adapter is a child module of the projection it
follows (so its parameters are named, saved and loaded with the model) and runs from a forward hook, so the
backbone's own parameter names and code are unchanged. Our own ~60 lines: the `adapters` package does not
import on transformers 5.x.

Count per adapter: 2 * d * b + b + d (d: the projection's output width, b: the bottleneck; b + 1 for the
first `plus_one` adapters).
"""

from __future__ import annotations

from dataclasses import dataclass

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod, target_modules
from petsweep.spec.errors import ConfigError

PLACEMENTS = {"houlsby": ["o", "ffn_out"], "pfeiffer": ["ffn_out"]}
ACTIVATIONS = {"gelu": "GELU", "relu": "ReLU", "tanh": "Tanh", "silu": "SiLU"}  # torch.nn class names


@dataclass
class AdapterConfig(MethodConfig):
    """Adapter's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        variant: houlsby (after attention and FFN) or pfeiffer (after the FFN only).
        bottleneck: inner width b.
        activation: gelu | relu | tanh | silu.
        init_std: both projections start N(0, init_std) with zero biases (OpenDelta's choice: a zero up
            projection would leave the down projection without gradient on the first step).
        train_norms: also train the backbone's norms, as the Houlsby paper did.
        plus_one: how many adapters (the first, in model order) get bottleneck + 1: a count between two
            bottlenecks (what `budget=` uses to come closer to a target on a shallow model); 0: uniform.
    """

    lr: float = 1e-3
    variant: str = "houlsby"
    bottleneck: int = 24
    activation: str = "gelu"
    init_std: float = 0.01
    train_norms: bool = False
    plus_one: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.variant not in PLACEMENTS:
            raise ConfigError("method.variant", self.variant, f"choose one of: {', '.join(PLACEMENTS)}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                "method.activation", self.activation, f"choose one of: {', '.join(ACTIVATIONS)}"
            )
        if not isinstance(self.bottleneck, int) or self.bottleneck < 1:
            raise ConfigError("method.bottleneck", self.bottleneck, "must be a positive integer")
        if not isinstance(self.plus_one, int) or self.plus_one < 0:
            raise ConfigError("method.plus_one", self.plus_one, "must be an integer >= 0")
        if not self.init_std >= 0:
            raise ConfigError("method.init_std", self.init_std, "must be >= 0")


def _after(module, inputs, output):
    return module.adapter(output)


@METHODS.register("adapter")
class AdapterMethod(PETMethod):
    budget_knobs = ("bottleneck", "plus_one")
    budget_strategy = "width_plus_one"
    budget_replaces = ("bottleneck", "plus_one")
    Config = AdapterConfig
    no_peft_form = "peft has no Houlsby bottleneck adapter"

    def attach(self, model, ctx):
        from petsweep.methods.layers.adapter import Bottleneck, output_width

        c = self.config
        _, targets, notes = target_modules(model, ctx, PLACEMENTS[c.variant], "method.variant")
        if c.plus_one >= len(targets):
            raise ConfigError(
                "method.plus_one", c.plus_one, f"must be below the number of adapters, {len(targets)}"
            )
        params = []
        for i, (_, module) in enumerate(targets):
            width = c.bottleneck + (i < c.plus_one)
            module.add_module(
                "adapter",
                Bottleneck(output_width(module), width, ACTIVATIONS[c.activation], c.init_std, module.weight),
            )
            module.register_forward_hook(_after)
            params += list(module.adapter.parameters())
        groups = [self.group(params)]
        if c.train_norms:
            _, norms, _ = target_modules(model, ctx, ["norms"], "method.train_norms")
            groups.append(
                self.group(
                    (p for _, m in norms for p in m.parameters(recurse=False) if not ctx.is_head(p)),
                    name="norms",
                )
            )
        return Attached(model, groups, notes)
