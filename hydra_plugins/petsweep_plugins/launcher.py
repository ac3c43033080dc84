"""hydra/launcher=petsweep_local: warm worker processes (or a process per run), each run with the GPUs it asks
for, or some cores."""

import dataclasses
import os
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import MISSING, DictConfig

from launchers.slurm_settings import SlurmSettings


def planned_runs(launcher, job_overrides):
    """The jobs' planned runs (paths, configs), planned here: what `launch` does for a sweeper that hands over
    overrides only (Optuna's); petsweep's sweepers hand their plan to `launch_planned` instead."""
    from launchers.planning import plan

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
    fuse: int = 1  # up to this many runs train together on one frozen backbone (launchers/fusion.py)
    fuse_tokens: int | None = None  # a fused step's token budget; null: 1,024 on CPU, 16,384 per GPU


ConfigStore.instance().store(
    group="hydra/launcher", name="petsweep_local", node=PetsweepLocalConf, provider="petsweep"
)


class PetsweepLocalLauncher(Launcher):
    def __init__(
        self,
        max_parallel: int | None = None,
        threads_per_run: int | None = None,
        warm_workers: bool = True,
        fuse: int = 1,
        fuse_tokens: int | None = None,
    ):
        from launchers.fusion import check_fuse

        check_fuse(fuse, warm_workers)
        self.max_parallel, self.threads_per_run, self.warm = max_parallel, threads_per_run, warm_workers
        self.fuse, self.fuse_tokens = fuse, fuse_tokens
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    @staticmethod
    def _reporter(jobs, logs_dir: Path):
        """Prints a line as each run ends (launchers.progress), and keeps each job's slot time beside the
        launch's logs (slots.jsonl: where a sweep's time went, beyond the runs' own)."""
        import json

        from launchers.progress import SweepProgress, outcome
        from petsweep.records.labels import display, of_run

        progress = SweepProgress(sum(len(job.runs) for job in jobs))

        def done(index: int, codes: list[int], seconds: float) -> None:
            for run, code in zip(jobs[index].runs, codes):
                name = display(run.path.name, of_run(run.path))  # what differs (the sweep's sweep.json)
                progress.finished(name, outcome(run.path, code, jobs[index].log), seconds)
            line = {"runs": [run.path.name for run in jobs[index].runs], "codes": codes, "slot_s": seconds}
            try:
                logs_dir.mkdir(parents=True, exist_ok=True)
                with (logs_dir / "slots.jsonl").open("a") as fh:
                    fh.write(json.dumps(line) + "\n")
            except OSError:  # a full disk: the slot times are lost, not the sweep
                pass

        return done

    @staticmethod
    def _returned(run, code: int, log: Path):
        """What Hydra's sweeper gets back: the run's optimized_metric, or the failure."""
        from petsweep.records.status import RunDir
        from petsweep.run.app import optimized_value

        result = RunDir(run.path).result() if code == 0 else None
        if result is None:
            return RuntimeError(f"exit {code}; see {log}")
        return optimized_value(result, run.cfg.get("optimized_metric", "dev"))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.launch_planned(planned_runs(self, job_overrides))

    def launch_planned(self, runs) -> Sequence[JobReturn]:
        """Launch planned runs (launchers.planning.PlannedRun, in job order): what petsweep's sweepers call
        with the plan they made."""
        from launchers.local import gpu_count, gpus_wanted, local_jobs, run_pool
        from launchers.sweep import sweep_dir_of
        from petsweep.run.rehash import reusable_result

        if not runs:
            return []
        sweep_dir = sweep_dir_of(runs)  # where the runs go (not Hydra's raw hydra.sweep.dir: R23 review F9)
        # one folder per launch: a resumed sweep keeps the logs of its earlier launches
        logs_dir = sweep_dir / ".launcher" / time.strftime("%Y%m%d-%H%M%S") / str(os.getpid())
        search = list(self.config.hydra.searchpath or [])
        extra = [f"hydra.searchpath=[{','.join(search)}]"] if search else []
        job_overrides = [list(run.overrides) for run in runs]
        # a config proposed twice (Optuna may) runs once, and a finished one not at all: its record answers
        first: dict[Path, int] = {}
        todo = [
            i
            for i, run in enumerate(runs)
            if first.setdefault(run.path, i) == i and reusable_result(run.path) is None
        ]
        jobs = local_jobs(
            [runs[i] for i in todo],
            [list(job_overrides[i]) + extra for i in todo],
            logs_dir,
            self.fuse,
            self.fuse_tokens,
        )
        ran = run_pool(
            jobs,
            self.max_parallel,
            self.threads_per_run,
            sweep_dir,
            [gpus_wanted(job.cfg) for job in jobs] if gpu_count() else None,
            self._reporter(jobs, logs_dir),
            self.warm,
        )
        code_of = {run.path: code for job, codes in zip(jobs, ran) for run, code in zip(job.runs, codes)}
        log_of = {run.path: job.log for job in jobs for run in job.runs}
        codes = [code_of.get(run.path, 0) for run in runs]
        logs = [log_of.get(run.path, logs_dir) for run in runs]
        returned = [self._returned(run, code, log) for run, code, log in zip(runs, codes, logs)]
        return [
            JobReturn(
                overrides=list(o),
                status=JobStatus.FAILED if isinstance(value, Exception) else JobStatus.COMPLETED,
                _return_value=value,
            )
            for o, value in zip(job_overrides, returned)
        ]


def hydra_node(settings: type, target: str, required: dict[str, type]) -> type:
    """The Hydra node of a launcher whose keys a dataclass of launchers/ declares (their one declaration):
    its fields, with `_target_` first, the `required` ones typed as given and missing (???), and a container
    default (a list, a dict) null, which the launcher drops so that the dataclass's own applies."""
    hints = typing.get_type_hints(settings)
    fields: list[tuple] = [("_target_", str, target)]
    for f in dataclasses.fields(settings):
        if f.name in required:
            fields.append((f.name, required[f.name], MISSING))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name] | None, None))
        else:
            fields.append((f.name, hints[f.name], f.default))
    return dataclasses.make_dataclass(f"Petsweep{settings.__name__}Conf", fields)


# every cluster preset names its partition
PetsweepSlurmConf = hydra_node(
    SlurmSettings, "hydra_plugins.petsweep_plugins.launcher.PetsweepSlurmLauncher", {"partition": str}
)


ConfigStore.instance().store(
    group="hydra/launcher", name="petsweep_slurm", node=PetsweepSlurmConf, provider="petsweep"
)


class PetsweepSlurmLauncher(Launcher):
    """Submits through submitit (launchers.slurm); waits for the arrays to leave the queue unless detach."""

    def __init__(self, **settings: Any):
        settings = {k: v for k, v in settings.items() if v is not None}
        self.settings = SlurmSettings(**settings)

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.launch_planned(planned_runs(self, job_overrides))

    def launch_planned(self, runs) -> Sequence[JobReturn]:
        """Submit planned runs (launchers.planning.PlannedRun, in job order): what petsweep's sweepers call
        with the plan they made."""
        from launchers import slurm
        from launchers.sweep import sweep_dir_of

        if not runs:
            return []
        job_overrides = [list(run.overrides) for run in runs]
        folder = sweep_dir_of(runs) / ".submitit"  # beside the runs, as the local launcher's logs
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
