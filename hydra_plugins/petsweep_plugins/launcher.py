"""hydra/launcher=petsweep_local: warm worker processes (or a process per run), each run with the GPUs it asks
for, or some cores."""

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import MISSING, DictConfig


def planned_runs(launcher, job_overrides):
    """The jobs' planned runs (paths, configs): the petsweep sweeper's plan when it handed one to `launcher`
    (its `planned`, taken once), else a plan made here (another sweeper, such as Optuna's, hands over
    overrides only)."""
    from launchers.planning import plan

    runs, launcher.planned = launcher.planned, None
    if runs is not None and [list(r.overrides) for r in runs] == [list(o) for o in job_overrides]:
        return runs
    return plan(
        [list(o) for o in job_overrides],
        lambda ov: launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(ov)),
    )


@dataclass
class PetsweepLocalConf:
    _target_: str = "hydra_plugins.petsweep_plugins.launcher.PetsweepLocalLauncher"
    max_parallel: int | None = None  # null: one run per GPU, or one per core on CPU
    threads_per_run: int | None = None  # CPU threads of each run; null: the cores split among the runs
    warm_workers: bool = True  # runs in workers that stay up between runs; false: a new process per run


ConfigStore.instance().store(
    group="hydra/launcher", name="petsweep_local", node=PetsweepLocalConf, provider="petsweep"
)


class PetsweepLocalLauncher(Launcher):
    def __init__(
        self, max_parallel: int | None = None, threads_per_run: int | None = None, warm_workers: bool = True
    ):
        self.max_parallel, self.threads_per_run, self.warm = max_parallel, threads_per_run, warm_workers
        self.config: DictConfig | None = None
        self.planned = None  # the petsweep sweeper's planned runs for the next launch, in job order

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    @staticmethod
    def _reporter(runs, logs):
        """Prints a line as each run ends (launchers.progress)."""
        from launchers.progress import SweepProgress, outcome

        progress = SweepProgress(len(runs))

        def done(index: int, code: int, seconds: float) -> None:
            path = runs[index].path
            progress.finished(path.name, outcome(path, code, logs[index]), seconds)

        return done

    @staticmethod
    def _returned(run, code: int, log: Path):
        """What Hydra's sweeper gets back: the run's optimized_metric, or the failure."""
        from petsweep.app import optimized_value
        from petsweep.status import RunDir

        result = RunDir(run.path).result() if code == 0 else None
        if result is None:
            return RuntimeError(f"exit {code}; see {log}")
        return optimized_value(result, run.cfg.get("optimized_metric", "dev"))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from launchers.local import gpu_count, gpus_wanted, run_pool
        from launchers.warm import Job
        from petsweep.status import COMPLETED, RunDir

        sweep_dir = Path(self.config.hydra.sweep.dir)
        # one folder per launch: a resumed sweep keeps the logs of its earlier launches
        logs_dir = sweep_dir / ".launcher" / time.strftime("%Y%m%d-%H%M%S") / str(os.getpid())
        search = list(self.config.hydra.searchpath or [])
        extra = [f"hydra.searchpath=[{','.join(search)}]"] if search else []
        jobs = [list(o) + extra for o in job_overrides]
        runs = planned_runs(self, job_overrides)
        logs = [logs_dir / f"{run.path.name}.log" for run in runs]
        # a config proposed twice (Optuna may) runs once, and a finished one not at all: its record answers
        first: dict[Path, int] = {}
        todo = [
            i
            for i, run in enumerate(runs)
            if first.setdefault(run.path, i) == i and RunDir(run.path).state() != COMPLETED
        ]
        ran = run_pool(
            [Job(jobs[i], runs[i].cfg, runs[i].path, logs[i]) for i in todo],
            sys.argv[0],
            self.max_parallel,
            self.threads_per_run,
            sweep_dir,
            [gpus_wanted(runs[i].cfg) for i in todo] if gpu_count() else None,
            self._reporter([runs[i] for i in todo], [logs[i] for i in todo]),
            self.warm,
        )
        code_of = {runs[i].path: code for i, code in zip(todo, ran)}
        codes = [code_of.get(run.path, 0) for run in runs]
        logs = [logs[first[run.path]] for run in runs]
        returned = [self._returned(run, code, log) for run, code, log in zip(runs, codes, logs)]
        return [
            JobReturn(
                overrides=list(o),
                status=JobStatus.FAILED if isinstance(value, Exception) else JobStatus.COMPLETED,
                _return_value=value,
            )
            for o, value in zip(job_overrides, returned)
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
    runs_per_task: int = 1  # short runs of one resource shape packed into one array task, run one by one
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
        self.planned = None  # the petsweep sweeper's planned runs for the next launch, in job order

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from launchers import slurm

        runs = planned_runs(self, job_overrides)
        folder = Path(self.config.hydra.sweep.dir) / ".submitit"
        job_ids = slurm.submit(runs, self.settings, folder)
        print(f"petsweep: submitted {len(job_ids)} SLURM task(s): {', '.join(job_ids)}")
        if self.settings.detach:
            return [
                JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value="QUEUED")
                for o in job_overrides
            ]
        slurm.wait(job_ids, runs=runs)
        return [
            JobReturn(
                overrides=list(o),
                status=JobStatus.COMPLETED if r.path.joinpath("result.json").exists() else JobStatus.FAILED,
                _return_value=None,
            )
            for o, r in zip(job_overrides, runs)
        ]
