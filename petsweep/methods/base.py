"""The small contract every PET method fulfils, and the registry that finds them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf
from torch import nn

from petsweep.backbones import BackboneSpec
from petsweep.errors import ConfigError
from petsweep.registry import Registry

METHODS: Registry[type["PETMethod"]] = Registry("method", "petsweep.methods")


@dataclass
class MethodConfig:
    """Keys every method YAML may set; a method subclasses this with its own hyper-parameters.

    Attributes:
        name: registry key, equal to the YAML stem.
        lr: learning rate of the method's parameters (methods differ by orders of magnitude).
        train_head: whether a task head that petsweep adds (encoders) is trained beside the method.
    """

    name: str
    lr: float = 1e-3
    train_head: bool = True


class PETMethod:
    """Base class: turn a pretrained model into one whose trainable parameters are the method's.

    Subclasses set `Config` and implement `apply`; `apply` must leave `requires_grad` True on exactly
    the method's parameters (the caller adds the task head), so that accounting, optimisation and
    checkpointing need no knowledge of the method.
    """

    Config: type[MethodConfig] = MethodConfig

    def __init__(self, config: MethodConfig):
        self.config = config

    def apply(self, model: nn.Module, backbone: BackboneSpec) -> nn.Module:
        raise NotImplementedError

    def param_groups(self, pet: list[nn.Parameter]) -> list[dict]:
        """Optimizer groups for the method's parameters; methods with several learning rates override."""
        return [{"params": pet, "lr": self.config.lr}]


def freeze_all(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def build_method(node: DictConfig | dict) -> PETMethod:
    """Validate a composed `method` node against its method's dataclass and build the method."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    cls = METHODS.get(values.get("name"), key="method")
    known = {f.name for f in dataclasses.fields(cls.Config)}
    for key in values:
        if key not in known:
            raise ConfigError(f"method.{key}", values[key], f"not a {values['name']} key; valid: {', '.join(sorted(known))}")
    return cls(cls.Config(**values))
