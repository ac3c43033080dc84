"""Simultaneous composition (Delta Tuning's combinations): several methods attached to one backbone and
trained together, each at its own learning rate; members must not train the same parameters.

    python run.py method=compose 'method.members=[{name: lora, r: 4}, {name: bitfit}]'

Members attach in the order given (the order matters where both touch the same module, e.g. LoRA + IA3).
For stages trained one after another, see `sequential`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, ParamGroup, PETMethod, build_method
from petsweep.spec.errors import ConfigError

COMPOSITIONS = ("compose", "sequential")


SOFT_PROMPTS = ("prompt", "dept")  # methods that install the one soft prompt a model reads
ONE_PREFIX = ("prefix",)  # the one prefix cache (model.prefix) a model reads


def check_members(members) -> None:
    """Two or more method nodes ({name: ..., and any of that method's keys}), none itself a composition."""
    if not isinstance(members, (list, tuple)) or len(members) < 2:
        raise ConfigError("method.members", members, "list two or more methods")
    names = [m.get("name") if isinstance(m, dict) else m for m in members]
    if any(name in COMPOSITIONS for name in names):
        raise ConfigError("method.members", names, f"a member cannot itself be {' or '.join(COMPOSITIONS)}")
    for kind, what in ((SOFT_PROMPTS, "the model's soft prompt"), (ONE_PREFIX, "the model's prefix cache")):
        # a second would replace the first's module (model.soft_prompt, model.prefix: its trained tensor then
        # in no record) and its hook skip or hide the other's
        if len([name for name in names if name in kind]) > 1:
            once = f"at most one of {', '.join(kind)}" if len(kind) > 1 else f"{kind[0]} at most once"
            raise ConfigError("method.members", names, f"{once}: each installs {what}")


def build_members(members) -> list[PETMethod]:
    return [build_method(dict(m) if isinstance(m, dict) else {"name": m}) for m in members]


def member_groups(index: int, member: PETMethod, attached: Attached) -> list[ParamGroup]:
    """A member's groups under stable names `<index>.<method>[/<group>]` (optimizer state is keyed so)."""
    groups = []
    for group in attached.groups:
        suffix = "" if group.name == "method" else f"/{group.name}"
        groups.append(ParamGroup(f"{index}.{member.config.name}{suffix}", group.params, group.lr, group.eps))
    return groups


def attach_members(model, ctx, members: list[PETMethod]) -> Attached:
    """Attach every member in order; refuse two members that train one parameter."""
    groups, notes, setup, buffers, owner = [], [], [], [], {}
    for index, member in enumerate(members):
        attached = member.attach(model, ctx)
        model = attached.model
        for param in (p for g in attached.groups for p in g.params):
            if id(param) in owner:
                raise ConfigError(
                    "method.members",
                    [m.config.name for m in members],
                    f"{owner[id(param)]} and {member.config.name} train the same parameters",
                )
            owner[id(param)] = member.config.name
        groups += member_groups(index, member, attached)
        notes += attached.notes
        setup += attached.setup
        buffers += attached.buffers
    return Attached(model, groups, notes, setup, buffers)


@dataclass
class ComposeConfig(MethodConfig):
    """Compose's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        lr: the task head's learning rate where trainer.head_lr is null; members train at their own.
        members: method nodes ({name: ..., and any of that method's keys}); each trains at its own lr.
    """

    members: list = field(default_factory=lambda: [{"name": "lora"}, {"name": "bitfit"}])

    def __post_init__(self):
        super().__post_init__()
        check_members(self.members)


@METHODS.register("compose")
class ComposeMethod(PETMethod):
    Config = ComposeConfig
    no_peft_form = "a composition holds several tuners; PeftModel.from_pretrained loads one"
    names_a_budget = False  # its members' counts do

    def __init__(self, config: ComposeConfig):
        super().__init__(config)
        self.members = build_members(config.members)

    def check(self, backbone):
        for member in self.members:
            member.check(backbone)

    def attach(self, model, ctx):
        return attach_members(model, ctx, self.members)

    def merge_for_export(self, model):
        for member in self.members:
            member.merge_for_export(model)
