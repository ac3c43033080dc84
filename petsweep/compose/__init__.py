"""Composing conf/ through Hydra, as `run.py` would: the floor above the methods, since the method group's
base nodes are the methods' own `Config` dataclasses (petsweep.methods.METHODS); spec/ keeps the schema.

`compose` turns Hydra's multi-line composition errors into one line naming the key, the value and the valid
choices (petsweep.compose.errors); the base nodes it registers first are petsweep.compose.nodes'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from petsweep import CONF_DIR
from petsweep.compose.errors import composition_error
from petsweep.compose.nodes import register_base_nodes

if TYPE_CHECKING:
    from omegaconf import DictConfig


def compose(overrides: list[str], config_name: str = "config", with_hydra: bool = False) -> DictConfig:
    """Compose conf/ with overrides, as `run.py` would; composition errors become one ConfigError line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_base_nodes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        try:
            return hydra_compose(
                config_name=config_name, overrides=list(overrides), return_hydra_config=with_hydra
            )
        except Exception as err:  # Hydra raises several types; all are the user's input
            raise composition_error(err, overrides) from None
