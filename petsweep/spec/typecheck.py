"""Config values against their dataclass field types: a wrong type is one line naming key, value and type.

OmegaConf hands plain values over (`16`, `"16"`, `[q, v]`), and a dataclass does not check them, so
`method.r=abc` would surface later as a library traceback. Annotations are read as written
(`int`, `float | None`, `list`); anything richer is left to the dataclass's own checks.
"""

from __future__ import annotations

import dataclasses
import functools
import typing

from omegaconf import DictConfig, OmegaConf

from petsweep.spec.errors import ConfigError

_TYPES = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
    "None": (type(None),),
}


def _allowed(annotation) -> tuple[str, ...] | None:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    names = [part.strip() for part in text.split("|")]
    names = [n.split("[")[0] for n in names]  # list[str] -> list
    return tuple(names) if all(n in _TYPES for n in names) else None


def _fits(value, names: tuple[str, ...]) -> bool:
    for name in names:
        if name in ("int", "float") and isinstance(value, bool):
            continue  # True is an int to Python, never to a config
        if isinstance(value, _TYPES[name]):
            return True
    return False


@functools.cache
def _field_types(cls) -> dict[str, tuple[str, ...] | None]:
    """Each field's allowed type names, parsed once per class (a plan checks every run's config, #25)."""
    return {f.name: _allowed(f.type) for f in dataclasses.fields(cls)}


def check_types(cls, values: dict, prefix: str) -> None:
    """Raise ConfigError for the first value whose type its field's annotation does not allow."""
    hints = _field_types(cls)
    for name, value in values.items():
        names = hints[name] if name in hints else _allowed(typing.Any)
        if names and not _fits(value, names):
            raise ConfigError(f"{prefix}.{name}", value, f"must be {' or '.join(n for n in names)}")


def plain(cfg: DictConfig | dict) -> dict:
    """The resolved config as plain dicts and lists (a plain dict is returned as it is).

    The hydra node is left out: it only resolves inside a running Hydra app and never changes a result.
    """
    if isinstance(cfg, dict):
        return cfg
    return {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in cfg
        if k != "hydra"
    }
