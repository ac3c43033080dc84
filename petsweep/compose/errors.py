"""Hydra's composition errors as one ConfigError line: the key, the value and the valid choices."""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from petsweep.spec.errors import ConfigError


def composition_error(err: Exception, overrides: list[str] = ()) -> ConfigError:
    """One line for Hydra's composition errors: unknown group option, unknown key, bad override syntax."""
    from hydra.errors import MissingConfigException

    text = str(err)
    if isinstance(err, MissingConfigException) and err.options is not None:
        group, _, value = (err.missing_cfg_file or "").rpartition("/")
        return ConfigError(
            group or "config", value, f"unknown option; choose one of: {', '.join(err.options)}"
        )
    match = re.search(r"Could not (?:override|append to) '([^']+)'", text)
    if match:
        key = match.group(1).lstrip("+")
        return ConfigError(
            key, _override_value(text), f"unknown key; valid keys there: {_sibling_keys(key, overrides)}"
        )
    match = re.fullmatch(r"Error merging override ([^=\s]+)=(.*)", text.splitlines()[0] if text else "")
    if match:  # a value of the wrong type (max_runs=2.5, targets=x for a list): the key and Hydra's reason
        cause = str(err.__cause__ or "").splitlines()
        reason = cause[0].strip() if cause else "could not compose the config"
        return ConfigError(match.group(1).lstrip("+~"), _Typed(match.group(2)), reason)
    return ConfigError("overrides", text.splitlines()[0], "could not compose the config")


class _Typed(str):
    """An override's value shown as typed in an error line (max_runs=2.5, not max_runs='2.5')."""

    def __repr__(self) -> str:
        return str(self)


def _override_value(text: str) -> str:
    match = re.search(r"use \+\+?[^=\s]+=(\S+)", text)
    return match.group(1) if match else "?"


def _sibling_keys(key: str, overrides: list[str]) -> str:
    """The keys beside an unknown one, read from the user's composition without the bad override."""
    from hydra import compose as hydra_compose

    parent = key.rpartition(".")[0]
    others = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        node = hydra_compose(
            config_name="config", overrides=others, return_hydra_config=key.startswith("hydra.")
        )
        node = OmegaConf.select(node, parent) if parent else node
        keys = [k for k in node.keys() if not str(k).startswith("_")] if isinstance(node, DictConfig) else []
        keys.sort()
        return ", ".join(keys) or "(none)"  # not _target_: the sweeper's class, no setting
    except Exception:
        return "(see python run.py --cfg job)"
