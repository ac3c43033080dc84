"""Sequential composition (Delta Tuning, Nature MI 2023): training in stages, stage k introduces method k
and trains only its parameters, at its own learning rate and with a fresh optimizer and schedule; the
methods of earlier stages stay attached, frozen.

    python run.py method=sequential 'method.members=[{name: prompt}, {name: bitfit}, {name: adapter}]'
    python run.py method=sequential method.steps=[50,25,25]

A later method is attached when its stage begins (a prompt is not in the model before its stage), with
its initialisation seeded by (run seed, stage), so a run resumed in any stage ends exactly where an
uninterrupted one does. A task head petsweep adds trains in every stage. The best dev checkpoint is chosen
among the evaluations of the last stage: the model a run reports has every stage's method.
Counts (`pet_params`) are every stage's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig
from petsweep.methods.compose import ComposeMethod, check_members, member_groups
from petsweep.spec.errors import ConfigError


@dataclass
class SequentialConfig(MethodConfig):
    """Sequential's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        lr: the task head's learning rate where trainer.head_lr is null; members train at their own.
        members: method nodes ({name: ..., and any of that method's keys}), one stage each, in order.
        steps: optimizer steps of each stage, summing to trainer.max_steps; null splits trainer.max_steps
            evenly (the last stages take the remainder).
    """

    members: list = field(
        default_factory=lambda: [{"name": "prompt"}, {"name": "bitfit"}, {"name": "adapter"}]
    )
    steps: list | None = None

    def __post_init__(self):
        super().__post_init__()
        check_members(self.members)
        if self.steps is None:
            return
        if not isinstance(self.steps, (list, tuple)) or len(self.steps) != len(self.members):
            raise ConfigError(
                "method.steps", self.steps, f"give one step count per member ({len(self.members)})"
            )
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in self.steps):
            raise ConfigError(
                "method.steps", self.steps, "every stage needs a positive integer number of steps"
            )


@METHODS.register("sequential")
class SequentialMethod(ComposeMethod):
    """Compose's members and checks; `attach` (every stage at once) serves counts and evaluation."""

    Config = SequentialConfig

    def stage_steps(self, max_steps: int) -> list[int]:
        steps = self.config.steps
        if steps is not None:
            if sum(steps) != max_steps:
                raise ConfigError(
                    "method.steps",
                    list(steps),
                    f"stages sum to {sum(steps)} steps; trainer.max_steps is {max_steps}",
                )
            return list(steps)
        base, extra = divmod(max_steps, len(self.members))
        if base == 0:
            raise ConfigError(
                "trainer.max_steps",
                max_steps,
                f"leaves a stage without steps ({len(self.members)} sequential stages)",
            )
        return [base + (i >= len(self.members) - extra) for i in range(len(self.members))]

    def attach_stage(self, model, ctx, stage):
        member = self.members[stage]
        attached = member.attach(model, ctx)
        if attached.model is not model:
            raise ConfigError(
                "method.members",
                member.config.name,
                "cannot join a sequential run after the first stage: it replaces the model object",
            )
        groups = member_groups(stage, member, attached)
        return Attached(model, groups, attached.notes, attached.setup, attached.buffers)
