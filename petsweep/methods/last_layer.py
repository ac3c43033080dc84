"""Last-layer tuning: train every parameter of the last transformer block of a stack (the Delta Tuning study
tuned the last block of T5's encoder). The task head is the framework's (train_head), never counted here."""

from dataclasses import dataclass

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod
from petsweep.methods.blocks import STACKS, blocks_by_stack, chosen_stacks
from petsweep.spec.errors import ConfigError


@dataclass
class LastLayerConfig(MethodConfig):
    """LastLayer's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        stack: auto (the encoder where there is one, else the decoder) | encoder | decoder | both.
        layers: how many blocks from the end of each stack.
    """

    lr: float = 1e-4
    stack: str = "auto"
    layers: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.stack not in STACKS:
            raise ConfigError("method.stack", self.stack, f"choose one of: {', '.join(STACKS)}")
        if not isinstance(self.layers, int) or self.layers < 1:
            raise ConfigError("method.layers", self.layers, "must be a positive number of blocks")


@METHODS.register("last_layer")
class LastLayerMethod(PETMethod):
    Config = LastLayerConfig
    no_peft_form = "it trains backbone weights in place: --format merged is its export"

    def attach(self, model, ctx):
        stacks = blocks_by_stack(model, ctx)
        params = []
        for kind in chosen_stacks(stacks, self.config.stack, "method.stack"):
            if self.config.layers > len(stacks[kind]):
                raise ConfigError(
                    "method.layers", self.config.layers, f"the {kind} has {len(stacks[kind])} blocks"
                )
            for _, block in stacks[kind][-self.config.layers :]:
                params += [p for p in block.parameters() if not ctx.is_head(p)]
        return Attached(model, [self.group(params)])
