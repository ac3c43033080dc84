"""The petsweep_slurm launcher's settings: a module of its own, light (no planner, no torch), because Hydra
imports the launcher plugin (hydra_plugins/petsweep_plugins/launcher.py, which derives its node from these
settings) whenever it composes a config: the plugins stay thin, and composing loads nothing above it (#23)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SlurmSettings:
    """hydra.launcher keys of the petsweep_slurm launcher (see conf/launcher/slurm_*.yaml): their one
    declaration. The plugin's Hydra node (hydra_plugins/petsweep_plugins/launcher.py) is derived from it:
    partition required there, a list or dict default null there (null: the default here)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    setup: list[str] = field(
        default_factory=list
    )  # shell lines before the run (module load, venv activate, exports)
    cpus_per_task: int = 1
    array_parallelism: int = 64
    max_array_size: int | None = None  # null: read MaxArraySize from `scontrol show config`
    max_num_timeout: int = 3  # requeues allowed after hitting the time limit (preemptions always requeue)
    runs_per_task: int = 1  # short runs of one resource shape packed into one array task, run one by one
    signal_delay_s: int = 120
    detach: bool = False  # submit and return; follow with `petsweep status`
    additional_parameters: dict[str, Any] = field(default_factory=dict)
