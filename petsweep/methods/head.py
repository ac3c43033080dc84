"""Head only (a linear probe): the task head petsweep adds is trained on the frozen backbone; the method adds
and unfreezes nothing. It is the baseline a PET number should be read against (what the PET modules add
beyond the trained head). Its count is the head's: pet_params 0, trainable_params = head_params.

Encoders only: encoder-decoders and decoders are trained through their LM head, which is the backbone's own
(tied to the input embedding on most), not a head petsweep adds, so there is no head to train alone there;
such a backbone is refused in one line (on the meta device too, so at plan time).
"""

from dataclasses import dataclass

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod
from petsweep.spec.errors import ConfigError


@dataclass
class HeadConfig(MethodConfig):
    """Head's hyper-parameters (beside those of every method: MethodConfig); `lr` is the head's (the head is
    this method's parameters, so trainer.head_lr does not apply; its default equals trainer.head_lr's).
    train_head=false trains nothing (the frozen backbone with its initial head)."""

    lr: float = 2e-3


@METHODS.register("head")
class HeadMethod(PETMethod):
    Config = HeadConfig
    no_peft_form = "it trains the task head alone: --format merged is its export"
    is_the_head = True
    names_a_budget = False  # pet_params 0

    def attach(self, model, ctx):
        if not ctx.head:
            raise ConfigError(
                "method",
                "head",
                f"trains the task head petsweep adds to encoders; backbone {ctx.backbone.name} is "
                f"{ctx.backbone.family} and predicts through its own LM head: choose an encoder backbone",
            )
        return Attached(model, [])  # the framework adds and trains the head (train_head)
