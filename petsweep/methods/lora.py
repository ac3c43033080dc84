"""LoRA through peft: low-rank updates W + (alpha/r) B A on the backbone's mapped modules."""

import re
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
class LoRAConfig(MethodConfig):
    """LoRA's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        r: rank of the update.
        alpha: scale numerator (update scaled by alpha / r).
        dropout: dropout on the LoRA input.
        targets: canonical module names (q, k, v, o, ffn_out, ...), mapped per model_type
            by petsweep.spec.architectures.
        plus_one: how many target modules (the first, in model order) get rank r + 1 (peft's rank_pattern;
            each module scales by alpha over its own rank): a count between two ranks, what `budget=` uses
            to come closer to a target; 0: uniform.
    """

    lr: float = 2e-3
    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    targets: list = field(default_factory=lambda: ["q", "v"])
    plus_one: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.r < 1:
            raise ConfigError("method.r", self.r, "the rank must be a positive integer")
        if not 0 <= self.dropout < 1:
            raise ConfigError("method.dropout", self.dropout, "must be in [0, 1)")
        if not isinstance(self.plus_one, int) or self.plus_one < 0:
            raise ConfigError("method.plus_one", self.plus_one, "must be an integer >= 0")
        if not self.targets:
            raise ConfigError("method.targets", self.targets, "name at least one module (e.g. [q, v])")


@METHODS.register("lora")
class LoRAMethod(PETMethod):
    budget_knobs = ("r", "plus_one")
    budget_strategy = "width_plus_one"
    budget_replaces = ("r", "plus_one")
    attaches_to_partitions = True  # peft reads in/out features from the module, not its weight
    Config = LoRAConfig
    fuses = True  # the shared projection once, each run's update on its rows
    no_peft_form = None  # peft's LoRA: listed first where the forms are
    peft_rank = 0

    @classmethod
    def trains_alone(cls, values):
        if values.get("dropout"):
            return "LoRA dropout draws masks a fused batch would draw differently: method.dropout=0 fuses"
        return None

    def peft_config(self, tuned, saved, head_modules, common):
        return injected_peft_config(tuned, common)  # peft's own tuner, as the run injected it

    def attach(self, model, ctx):
        c = self.config
        regex, modules, notes = target_modules(model, ctx, list(c.targets), "method.targets")
        from peft import LoraConfig  # imported when used: composing configs stays fast

        if c.plus_one >= max(len(modules), 1):
            raise ConfigError(
                "method.plus_one", c.plus_one, f"must be below the number of target modules, {len(modules)}"
            )
        ranks = {re.escape(name): c.r + 1 for name, _ in modules[: c.plus_one]}  # peft: (.*\.)?(key)$
        config = LoraConfig(
            r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout, target_modules=regex, rank_pattern=ranks
        )
        model, added = inject_peft(model, config)  # the LoRA matrices
        return Attached(model, [self.group(added)], notes)
