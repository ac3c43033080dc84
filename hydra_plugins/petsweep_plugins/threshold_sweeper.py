"""hydra/sweeper=threshold: the smallest budget that reaches each target, per cell (logic in
launchers.threshold_sweep and launchers.threshold_search)."""

import sys
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf


@dataclass
class ThresholdSweeperConf:
    _target_: str = "hydra_plugins.petsweep_plugins.threshold_sweeper.ThresholdSweeper"
    budget: str = "interval(100,1000000)"  # the budget interval, searched on a log ladder
    targets: list[str] = field(default_factory=lambda: ["random+0.05", "full-0.01"])
    resolution: float = 2.0  # stop when a bracket's ends are this factor apart
    max_runs: int = 40  # probes of one cell, all targets together
    confidence: float = 0.9
    max_seeds: int = 5  # seeds of one budget before it is called ambiguous
    budget_key: str | None = None  # null: `budget` where the composed config has it, else apet.scale
    seed_key: str = "seed"
    reference_method: str = "full"  # the `full` target's reference runs
    reference_seeds: int = 3
    max_rounds: int = 50


ConfigStore.instance().store(
    group="hydra/sweeper", name="threshold", node=ThresholdSweeperConf, provider="petsweep"
)


class ThresholdSweeper(Sweeper):
    def __init__(self, **settings):
        self.settings = settings
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from launchers.expand import use_config_loader
        from launchers.threshold_sweep import ThresholdSearch, ThresholdSettings
        from petsweep.cli import exit_on_user_error

        use_config_loader(self.hydra_context.config_loader)

        def compose(overrides: list[str]) -> DictConfig:
            return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

        def launch(runs) -> list[int]:
            self.launcher.planned = runs  # our launchers use the plan (paths, GPUs); others ignore it
            returns: list[JobReturn] = self.launcher.launch([r.overrides for r in runs], initial_job_idx=0)
            return [0 if str(r.status.name) == "COMPLETED" else 1 for r in returns]

        settings = {k: v for k, v in self.settings.items() if not k.startswith("_")}
        settings = OmegaConf.to_container(OmegaConf.create(settings)) if settings else {}
        with exit_on_user_error():
            search = ThresholdSearch(list(arguments), ThresholdSettings(**settings), compose, launch)
            complete = search.run()
        if not complete:
            sys.exit(1)
        return search
