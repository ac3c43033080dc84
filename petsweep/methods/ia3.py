"""IA3 (Liu et al., 2022) through peft: learned vectors that rescale keys, values and the FFN's inner
activations. Targets are canonical names from the architecture map, never peft's per-model defaults (on
BERT peft's default `output.dense` also catches the attention output projection)."""

from dataclasses import dataclass, field

from petsweep.methods import METHODS
from petsweep.methods.base import (
    Attached,
    MethodConfig,
    PETMethod,
    inject_peft,
    injected_peft_config,
    target_modules,
)
from petsweep.spec.errors import ConfigError


@dataclass
class IA3MethodConfig(MethodConfig):
    """IA3Method's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        targets: canonical modules whose outputs are rescaled (k, v) or whose inputs are (ffn_out).
        feedforward: the targets rescaled on their input (the FFN's inner activations), a subset of targets.
    """

    lr: float = 3e-3
    targets: list = field(default_factory=lambda: ["k", "v", "ffn_out"])
    feedforward: list = field(default_factory=lambda: ["ffn_out"])

    def __post_init__(self):
        super().__post_init__()
        extra = sorted(set(self.feedforward) - set(self.targets))
        if extra:
            raise ConfigError(
                "method.feedforward", extra, f"must be among method.targets {list(self.targets)}"
            )


@METHODS.register("ia3")
class IA3Method(PETMethod):
    Config = IA3MethodConfig
    no_peft_form = None  # peft's IA3
    peft_rank = 1

    def peft_config(self, tuned, saved, head_modules, common):
        return injected_peft_config(tuned, common)  # peft's own tuner, as the run injected it

    def attach(self, model, ctx):
        c = self.config
        regex, _, notes = target_modules(model, ctx, list(c.targets), "method.targets")
        feedforward = (
            ctx.backbone.targets(list(c.feedforward), "method.feedforward")[0] if c.feedforward else None
        )
        from peft import IA3Config  # imported when used: composing configs stays fast

        config = IA3Config(target_modules=regex, feedforward_modules=feedforward or [])
        model, added = inject_peft(model, config)
        return Attached(model, [self.group(added)], notes)
