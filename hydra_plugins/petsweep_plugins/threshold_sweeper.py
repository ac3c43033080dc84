"""hydra/sweeper=threshold: the smallest budget that reaches each target, per cell (logic in
launchers.threshold_sweep and launchers.threshold_search)."""

import sys
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from hydra_plugins.petsweep_plugins.sweeper import PlannedSweeper


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
    reference_seeds: Any = 3  # n: seeds 0..n-1; or a list of seeds (a grid's: [1,2,3])
    max_rounds: int = 50


ConfigStore.instance().store(
    group="hydra/sweeper", name="threshold", node=ThresholdSweeperConf, provider="petsweep"
)


class ThresholdSweeper(PlannedSweeper):
    def __init__(self, **settings):
        self.settings = settings

    def sweep(self, arguments: list[str]) -> Any:
        from launchers.threshold_sweep import ThresholdSearch, ThresholdSettings
        from petsweep.spec.errors import exit_on_user_error

        settings = {k: v for k, v in self.settings.items() if not k.startswith("_")}
        settings = OmegaConf.to_container(OmegaConf.create(settings)) if settings else {}
        with exit_on_user_error():
            search = ThresholdSearch(
                list(arguments), ThresholdSettings(**settings), self.compose, self.launch, loader=self.loader
            )
            complete = search.run()
        if not complete:
            sys.exit(1)
        return search
