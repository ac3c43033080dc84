"""hydra/launcher=petsweep_local: separate processes, each with the GPUs it asks for, or some cores."""

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import MISSING, DictConfig


@dataclass
class PetsweepLocalConf:
    _target_: str = "hydra_plugins.petsweep_plugins.launcher.PetsweepLocalLauncher"
    max_parallel: int | None = None  # null: one run per GPU, or one per core on CPU
    threads_per_run: int | None = None  # CPU threads of each run; null: the cores split among the runs


ConfigStore.instance().store(
    group="hydra/launcher", name="petsweep_local", node=PetsweepLocalConf, provider="petsweep"
)


class PetsweepLocalLauncher(Launcher):
    def __init__(self, max_parallel: int | None = None, threads_per_run: int | None = None):
        self.max_parallel, self.threads_per_run = max_parallel, threads_per_run
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def _gpus_per_job(self, job_overrides) -> list[int] | None:
        """How many GPUs each run takes, where the machine has GPUs to hand out (from the runs' configs)."""
        from launchers.local import gpu_count, gpus_wanted
        from launchers.planning import plan

        if not gpu_count():
            return None
        runs = plan(
            [list(o) for o in job_overrides],
            lambda ov: self.hydra_context.config_loader.load_sweep_config(self.config, list(ov)),
        )
        return [gpus_wanted(run.cfg) for run in runs]

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from launchers.local import run_pool

        sweep_dir = Path(self.config.hydra.sweep.dir)
        logs_dir = sweep_dir / ".launcher"
        search = list(self.config.hydra.searchpath or [])
        extra = [f"hydra.searchpath=[{','.join(search)}]"] if search else []
        jobs = [list(o) + extra for o in job_overrides]
        logs = [logs_dir / f"{initial_job_idx + i}.log" for i in range(len(jobs))]
        codes = run_pool(
            jobs,
            logs,
            sys.argv[0],
            self.max_parallel,
            self.threads_per_run,
            sweep_dir,
            self._gpus_per_job(job_overrides),
        )
        return [
            JobReturn(
                overrides=list(o),
                status=JobStatus.COMPLETED if c == 0 else JobStatus.FAILED,
                _return_value=c if c == 0 else RuntimeError(f"exit {c}; see {log}"),
            )
            for o, c, log in zip(job_overrides, codes, logs)
        ]


@dataclass
class PetsweepSlurmConf:
    _target_: str = "hydra_plugins.petsweep_plugins.launcher.PetsweepSlurmLauncher"
    partition: str = MISSING  # required: every cluster preset names its partition
    account: str | None = None
    qos: str | None = None
    setup: list[str] | None = None
    cpus_per_task: int = 1
    array_parallelism: int = 64
    max_array_size: int | None = None
    max_num_timeout: int = 3
    signal_delay_s: int = 120
    detach: bool = False
    additional_parameters: dict[str, Any] | None = None


ConfigStore.instance().store(
    group="hydra/launcher", name="petsweep_slurm", node=PetsweepSlurmConf, provider="petsweep"
)


class PetsweepSlurmLauncher(Launcher):
    """Submits through submitit (launchers.slurm); waits for the arrays to leave the queue unless detach."""

    def __init__(self, **settings: Any):
        from launchers.slurm import SlurmSettings

        settings = {k: v for k, v in settings.items() if v is not None}
        self.settings = SlurmSettings(**settings)

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from launchers import slurm
        from launchers.planning import plan

        runs = plan(
            [list(o) for o in job_overrides],
            lambda ov: self.hydra_context.config_loader.load_sweep_config(self.config, list(ov)),
        )
        search = list(self.config.hydra.searchpath or [])
        extra = [f"hydra.searchpath=[{','.join(search)}]"] if search else []
        folder = Path(self.config.hydra.sweep.dir) / ".submitit"
        job_ids = slurm.submit(runs, self.settings, folder, extra)
        print(f"petsweep: submitted {len(job_ids)} SLURM task(s): {', '.join(job_ids)}")
        if self.settings.detach:
            return [
                JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value="QUEUED")
                for o in job_overrides
            ]
        slurm.wait(job_ids)
        return [
            JobReturn(
                overrides=list(o),
                status=JobStatus.COMPLETED if r.path.joinpath("result.json").exists() else JobStatus.FAILED,
                _return_value=None,
            )
            for o, r in zip(job_overrides, runs)
        ]
