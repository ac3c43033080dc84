"""hydra/launcher=petsweep_local: runs as separate processes, one GPU each or a share of the cores."""


import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig


@dataclass
class PetsweepLocalConf:
    _target_: str = "hydra_plugins.petsweep_plugins.launcher.PetsweepLocalLauncher"
    max_parallel: Optional[int] = None  # null: one run per GPU, or one per core on CPU
    threads_per_run: Optional[int] = None  # CPU threads of each run; null: the cores split among the runs


ConfigStore.instance().store(group="hydra/launcher", name="petsweep_local", node=PetsweepLocalConf,
                             provider="petsweep")


class PetsweepLocalLauncher(Launcher):
    def __init__(self, max_parallel: Optional[int] = None, threads_per_run: Optional[int] = None):
        self.max_parallel, self.threads_per_run = max_parallel, threads_per_run
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from launchers.local import run_pool

        logs_dir = Path(self.config.hydra.sweep.dir) / ".launcher"
        search = list(self.config.hydra.searchpath or [])
        extra = [f"hydra.searchpath=[{','.join(search)}]"] if search else []
        jobs = [list(o) + extra for o in job_overrides]
        logs = [logs_dir / f"{initial_job_idx + i}.log" for i in range(len(jobs))]
        codes = run_pool(jobs, logs, sys.argv[0], self.max_parallel, self.threads_per_run)
        return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED if c == 0 else JobStatus.FAILED,
                          _return_value=c if c == 0 else RuntimeError(f"exit {c}; see {log}"))
                for o, c, log in zip(job_overrides, codes, logs)]
