"""hydra/sweeper=petsweep: a sweep that remembers (skip done, dedupe, zip axes); logic in launchers.sweep."""

import sys
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig


@dataclass
class PetsweepSweeperConf:
    _target_: str = "hydra_plugins.petsweep_plugins.sweeper.PetsweepSweeper"
    params: dict[str, str] | None = None  # axes from config (sweep presets); the command line wins
    zip: list[list[str]] | None = None  # groups of axes that are paired, not multiplied


ConfigStore.instance().store(
    group="hydra/sweeper", name="petsweep", node=PetsweepSweeperConf, provider="petsweep"
)


class PlannedSweeper(Sweeper):
    """What petsweep's sweepers share: the configured launcher, a composer of one run's config (its errors in
    one line), the config loader glob() axes list a group's options with, and a launch of planned runs that
    returns an exit code per run: the launcher, one of petsweep's, is handed the plan itself
    (`launch_planned`: the planned, validated runs), never overrides to compose and validate again (R23 F6:
    Hydra's basic launcher did). The launcher's settings are checked here and the runs validated by the
    sweep's plan, before anything launches: run.py's preflight composes nothing of a sweep of ours."""

    config: DictConfig | None = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from petsweep.cli import check_launcher
        from petsweep.spec.errors import exit_on_user_error

        self.hydra_context, self.config = hydra_context, config
        with exit_on_user_error():  # before the launcher is made of its settings, in one line
            _refuse_foreign_launcher(config)
            check_launcher(config.hydra.launcher)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.loader = hydra_context.config_loader

    def compose(self, overrides: list[str]) -> DictConfig:
        from petsweep.compose.errors import composition_error

        try:
            return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        except Exception as err:  # Hydra raises several types; all are the user's input
            raise composition_error(err, overrides) from None

    def launch(self, runs) -> list[int]:
        returns: list[JobReturn] = self.launcher.launch_planned(runs)  # the plan's paths, configs and GPUs
        return [0 if str(r.status.name) == "COMPLETED" else 1 for r in returns]


PETSWEEP_LAUNCHERS = "hydra_plugins.petsweep_plugins.launcher."


def _refuse_foreign_launcher(config: DictConfig) -> None:
    """A launcher not petsweep's (Hydra's basic, joblib, ...) takes overrides, and composes and validates each
    run again in this process; petsweep's take the plan. Refused in one line, before anything launches."""
    from petsweep.spec.errors import ConfigError

    if str(config.hydra.launcher.get("_target_", "")).startswith(PETSWEEP_LAUNCHERS):
        return
    choice = config.hydra.runtime.choices.get("hydra/launcher")
    raise ConfigError(
        "hydra/launcher",
        choice,
        "petsweep's sweepers launch through petsweep's launchers: launcher=local (the default; "
        "hydra/launcher=petsweep_local) or launcher=slurm_<cluster> (hydra/launcher=petsweep_slurm)",
    )


class PetsweepSweeper(PlannedSweeper):
    def __init__(self, params: dict[str, str] | None = None, zip: list[list[str]] | None = None):
        self.params = dict(params or {})
        self.zips = [list(group) for group in (zip or [])]

    def sweep(self, arguments: list[str]) -> Any:
        from launchers.sweep import run_sweep, unfinished
        from petsweep.spec.errors import exit_on_user_error

        with exit_on_user_error():
            params = [f"{k}={v}" for k, v in self.params.items()]
            runs = run_sweep(
                params + list(arguments),
                self.zips,
                self.compose,
                self.launch,
                loader=self.loader,
                composed=(list(arguments), self.config),  # Hydra's start composed the sweep's own overrides
            )
        if unfinished(runs):
            sys.exit(1)
        return runs
