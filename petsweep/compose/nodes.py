"""The base nodes of Hydra's ConfigStore: every key of a group's dataclass, with its default.

conf/config.yaml lists `base/<group>@<group>` before the group's option, and a method YAML lists
`/base/method/<name>@_here_` first, so an option YAML states only what differs from the defaults, yet every
key can be overridden from the command line and a typo in a key name is still an error. The dataclasses stay
the one source of truth for keys and defaults: spec/'s schema for the backbone, task, trainer and apet groups,
each method's own `Config` for the method group.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from petsweep.spec.apet import ApetSpec
from petsweep.spec.backbone import BackboneSpec
from petsweep.spec.config import TrainerConfig, dataclass_defaults
from petsweep.spec.task import TaskSpec

SCHEMA_GROUPS = (
    ("backbone", BackboneSpec),
    ("task", TaskSpec),
    ("trainer", TrainerConfig),
    ("apet", ApetSpec),
)


def register_base_nodes() -> None:
    """Put the base nodes in Hydra's ConfigStore, once per process.

    Whatever composes calls it first (petsweep.compose.compose; run.py before Hydra starts): it loads every
    method's module, which takes seconds and is why importing petsweep.spec does not. A ConfigStore that
    holds the method nodes (stored last) has them all.
    """
    from hydra.core.config_store import ConfigStore

    from petsweep.methods import METHODS

    store = ConfigStore.instance()
    if _stored(store, "base/method"):
        return
    for group, cls in SCHEMA_GROUPS:
        store.store(group="base", name=group, node=OmegaConf.create(dataclass_defaults(cls)))
    for name in METHODS.names():
        defaults = {**dataclass_defaults(METHODS.get(name).Config), "name": name}
        store.store(group="base/method", name=name, node=OmegaConf.create(defaults))


def _stored(store, group: str) -> bool:
    """Whether Hydra's ConfigStore holds options of `group`."""
    try:
        return bool(store.list(group))
    except OSError:  # Hydra's "Path not found"
        return False
