"""Simultaneous composition (Delta Tuning's combinations): several methods attached to one backbone and
trained together, each at its own learning rate; members must not train the same parameters.

    python run.py method=compose 'method.members=[{name: lora, r: 4}, {name: bitfit}]'

Members attach in the order given (the order matters where both touch the same module, e.g. LoRA + IA3).
Sequential composition (stages with their own steps) is not available yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from petsweep.errors import ConfigError
from petsweep.methods.base import METHODS, Attached, MethodConfig, ParamGroup, PETMethod, build_method


@dataclass
class ComposeConfig(MethodConfig):
    """Attributes:
        members: method nodes ({name: ..., and any of that method's keys}); each trains at its own lr.
    """

    members: list = field(default_factory=lambda: [{"name": "lora"}, {"name": "bitfit"}])

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.members, (list, tuple)) or len(self.members) < 2:
            raise ConfigError("method.members", self.members, "list two or more methods to train together")
        names = [m.get("name") if isinstance(m, dict) else m for m in self.members]
        if "compose" in names:
            raise ConfigError("method.members", names, "a member cannot itself be compose")


@METHODS.register("compose")
class ComposeMethod(PETMethod):
    Config = ComposeConfig

    def __init__(self, config: ComposeConfig):
        super().__init__(config)
        self.members = [build_method(dict(m) if isinstance(m, dict) else {"name": m}) for m in config.members]

    def check(self, backbone):
        for member in self.members:
            member.check(backbone)

    def attach(self, model, ctx):
        groups, notes, owner = [], [], {}
        for index, member in enumerate(self.members):
            attached = member.attach(model, ctx)
            model = attached.model
            for group in attached.groups:
                for param in group.params:
                    if id(param) in owner:
                        raise ConfigError(
                            "method.members",
                            [m.config.name for m in self.members],
                            f"{owner[id(param)]} and {member.config.name} train the same parameters",
                        )
                    owner[id(param)] = member.config.name
                suffix = "" if group.name == "method" else f"/{group.name}"
                groups.append(ParamGroup(f"{index}.{member.config.name}{suffix}", group.params, group.lr))
            notes += attached.notes
        return Attached(model, groups, notes)
