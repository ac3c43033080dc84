"""SLURM dispatch through submitit: job arrays per resource shape, chunked under MaxArraySize, requeue-safe.

Each array task runs one petsweep run in-process (`SlurmRun`), or `runs_per_task` short runs one after
another. A run of G ranks is a task of G SLURM tasks (tasks_per_node x nodes, from petsweep.spec.shape:
one rank per GPU, or trainer.ranks spread evenly over the nodes), each of which joins torch.distributed from
SLURM's environment; rank 0 owns the run's records. A requeued task (preemption, timeout, `scontrol requeue`)
runs the same run again, and the run continues from its last checkpoint; the run's own status file, never
SLURM accounting, says how it ended.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from launchers.planning import PlannedRun
from launchers.slurm_settings import SlurmSettings
from petsweep.records.status import FAILED, QUEUED, RunDir, slurm_queue, write_json
from petsweep.spec.errors import PetsweepError
from petsweep.spec.shape import run_shape


def _resolved(spec: dict) -> dict:
    """A ResolvedRun's dict; a task pickled before runs crossed as ResolvedRuns (a plain config, requeued
    after an update) is resolved here, on the node."""
    if "run_id" in spec:
        return spec
    from petsweep.model.resolve import unvalidated_run

    return unvalidated_run(spec).to_dict()


def _on_task_cpus(spec: dict) -> dict:
    """The run on the CPUs SLURM gave its task (SLURM_CPUS_PER_TASK: the launcher's cpus_per_task), where
    trainer.num_threads (0 or null) and OMP_NUM_THREADS leave the number to torch, whose default is every
    core of the node: a node's other tasks, and the job's other ranks, share them (two ranks of one job on
    the 2-core test node each took both cores and trained 4x slower than two local ranks, which split them:
    run/app._threads_per_rank)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if not (cpus.isascii() and cpus.isdigit()) or int(cpus) < 1:
        return spec
    if spec["config"]["trainer"].get("num_threads") or os.environ.get("OMP_NUM_THREADS"):
        return spec  # the user's, the site's or the job's own choice (torch takes OMP_NUM_THREADS)
    from petsweep.spec.resolved import ResolvedRun

    return ResolvedRun.from_dict(spec).with_threads(int(cpus)).to_dict()


class SlurmRun:
    """The picklable callable of one array task: its runs (one, or `runs_per_task`), each as the plan resolved
    it (a ResolvedRun's dict; device and precision are decided on the node) with the QUEUED claim it was
    submitted under, run in this process one after another (petsweep.run.worker's run_job, as a warm local
    worker runs them). A run that fails is recorded and the
    next one goes on. A task requeued on SLURM's signal skips the runs it finished; one requeued without
    warning (`scontrol requeue`, a node lost) runs its list again, and COMPLETED runs answer from their
    records."""

    def __init__(self, runs: list[tuple[dict, str | None]], ended: set[int] = frozenset()):
        self.runs, self.ended = list(runs), set(ended)  # ended: runs an earlier attempt of the task finished

    def __call__(self) -> list[int]:
        from petsweep.run.worker import run_job

        codes = []
        for index, (spec, token) in enumerate(self.runs):
            if index in self.ended:
                continue
            if len(self.runs) > 1:
                print(f"petsweep: run {index + 1} of {len(self.runs)} in this task", flush=True)
            if int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # RANK, WORLD_SIZE, MASTER_* from SLURM's env
                import submitit

                # not one inherited from the submitting shell; each run of the task its own
                os.environ["MASTER_PORT"] = str(rendezvous_port(index))
                submitit.helpers.TorchDistributedEnvironment().export(overwrite=True)
            codes.append(run_job(_on_task_cpus(_resolved(spec)), token))
            self.ended.add(index)
        return codes

    def checkpoint(self):
        """submitit calls this on SLURM's signal: requeue the runs this attempt has not finished (the one it
        stops resumes from the checkpoint it just saved)."""
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmRun(self.runs, self.ended))


def rendezvous_port(run_index: int = 0) -> int:
    """The port rank 0 serves the rendezvous on: every task of the job derives it from the job id without
    talking to the others, below Linux's ephemeral range (32768+), and a requeued job (SLURM_RESTART_COUNT)
    or the next run of the task (`run_index`) gets a fresh one, since an earlier port may linger in
    TIME_WAIT."""
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    key = f"{os.environ.get('SLURM_JOB_ID', '')}:{restarts}" + (f":{run_index}" if run_index else "")
    return 20000 + zlib.crc32(key.encode()) % 12000


def max_array_size() -> int:
    """The cluster's MaxArraySize (array indexes must stay below it)."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        detail = " ".join((getattr(err, "stderr", "") or str(err)).split())
        raise PetsweepError(
            f"launcher: SLURM is not reachable (scontrol show config: {detail.strip()[:120]}); "
            f"check SLURM_CONF and that slurmctld runs, or use launcher=local"
        ) from None
    for line in out.splitlines():
        if line.strip().startswith("MaxArraySize"):
            return int(line.split("=")[1])
    return 1001  # SLURM's default


def chunks(items: list, size: int) -> list[list]:
    """Split into arrays of at most `size` tasks; each is submitted as its own array, indexed from 0."""
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True)
class Shape:
    """What one run asks SLURM for: GPUs and memory per node, minutes, nodes, and tasks (ranks) per node."""

    gpus: int
    mem_gb: int
    time_min: int
    nodes: int
    tasks_per_node: int


def shape(cfg: dict) -> Shape:
    """What sbatch is asked for one run: nodes, GPUs and tasks (ranks) per node as petsweep.spec.shape rules
    them (the same world the run's identity counts), memory per node and minutes from the backbone's
    `resources`."""
    res = cfg["backbone"]["resources"]
    run = run_shape(cfg)
    mem_gb, minutes = int(res.get("mem_gb", 4) or 4), int(res.get("time_min", 60) or 60)
    return Shape(run.gpus_per_node, mem_gb, minutes, run.nodes, run.ranks_per_node)


def partition_gpus(partition: str | None) -> tuple[int, str] | None:
    """The most GPUs one node of the partition has, and what sinfo printed; None if sinfo cannot say."""
    command = ["sinfo", "-h", "-o", "%G"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    counts = [int(n) for n in re.findall(r"gpu(?::[^:,(\s]+)?:(\d+)", out.stdout)]
    return max(counts, default=0), " ".join(out.stdout.split())


def check_gpus(runs: list[PlannedRun], settings: SlurmSettings) -> None:
    """Refuse, before anything is claimed or submitted, a backbone that asks a node for more GPUs than any
    node of the partition has (sbatch would only say 'Requested node configuration is not available')."""
    if not runs:
        return
    biggest = max(runs, key=lambda run: shape(run.cfg).gpus)
    wanted = shape(biggest.cfg).gpus
    have = partition_gpus(settings.partition) if wanted else None
    if have is not None and wanted > have[0]:
        raise PetsweepError(
            f"{_gpus_asked_by(biggest.cfg)} asks for {wanted} GPUs per node and partition "
            f"{settings.partition or '(default)'} has at most {have[0]} (sinfo: {have[1]}); choose a "
            f"partition with more, or spread the run with backbone.resources.nodes"
        )


def _gpus_asked_by(cfg: dict) -> str:
    """The key that sets a run's GPUs per node, with its value: trainer.ranks where it is set (a GPU per
    rank), else the backbone's resources."""
    ranks, nodes = cfg["trainer"].get("ranks"), run_shape(cfg).nodes
    if ranks is not None:
        return f"trainer.ranks: trainer.ranks={ranks} on {nodes} node(s), a GPU per rank,"
    return f"backbone.resources.gpus: backbone={cfg['backbone']['name']}"


def _executor(folder: Path, settings: SlurmSettings, asked: Shape, runs_per_task: int):
    import submitit

    executor = submitit.AutoExecutor(
        folder=folder / "%j", cluster="slurm", slurm_max_num_timeout=settings.max_num_timeout
    )
    params = dict(
        timeout_min=asked.time_min * runs_per_task,  # the task runs its runs one after another
        mem_gb=asked.mem_gb,
        cpus_per_task=settings.cpus_per_task,
        nodes=asked.nodes,
        tasks_per_node=asked.tasks_per_node,
        slurm_array_parallelism=settings.array_parallelism,
        slurm_setup=list(settings.setup),
        slurm_signal_delay_s=settings.signal_delay_s,
        # a rank that dies ends the job's other ranks (they would wait for it in a collective until timeout)
        slurm_srun_args=["--kill-on-bad-exit=1"],
        slurm_additional_parameters=dict(settings.additional_parameters),
    )
    if asked.gpus:
        params["gpus_per_node"] = asked.gpus
    for key in ("partition", "account", "qos"):
        if getattr(settings, key):
            params[f"slurm_{key}"] = getattr(settings, key)
    executor.update_parameters(**params)
    return executor


def check_runs_per_task(runs_per_task) -> None:
    if isinstance(runs_per_task, bool) or not isinstance(runs_per_task, int) or runs_per_task < 1:
        raise PetsweepError(
            f"hydra.launcher.runs_per_task: {runs_per_task!r} is not a number of runs; "
            f"expected an integer >= 1 (1: a task per run)"
        )


def submit(runs: list[PlannedRun], settings: SlurmSettings, folder: Path) -> list[str]:
    """Submit the runs as arrays (one per resource shape, chunked), `runs_per_task` runs per array task;
    returns the SLURM job ids (one per task).

    Each run is claimed QUEUED before sbatch (atomically: a run another sweep has just claimed is skipped),
    and sbatch's answer goes to slurm.json, never to status.json, so a job that starts at once and writes
    RUNNING is never overwritten by its own submission.
    """
    check_runs_per_task(settings.runs_per_task)
    limit = settings.max_array_size or max_array_size()
    check_gpus(runs, settings)
    groups: dict[Shape, list[PlannedRun]] = {}
    for run in runs:
        groups.setdefault(shape(run.cfg), []).append(run)
    job_ids = []
    for asked, members in groups.items():
        executor = _executor(folder, settings, asked, settings.runs_per_task)
        for chunk in chunks(members, limit * settings.runs_per_task):  # array indexes 0..limit-1
            claimed = [(run, token) for run in chunk if (token := RunDir(run.path).claim(QUEUED)) is not None]
            array = chunks(claimed, settings.runs_per_task)
            if not array:
                continue
            try:
                with executor.batch():
                    jobs = [
                        executor.submit(SlurmRun([(run.resolved().to_dict(), token) for run, token in task]))
                        for task in array
                    ]
            except Exception as err:
                for task in array:
                    for run, _ in task:
                        RunDir(run.path).set_status(
                            FAILED, error=f"submission failed: {type(err).__name__}: {err}"
                        )
                raise
            for task, job in zip(array, jobs):
                for run, token in task:
                    _record_submission(run, job, token)
                job_ids.append(job.job_id)
    return job_ids


def _record_submission(run: PlannedRun, job, token: str) -> None:
    """slurm.json (job id and the claim it answers) and the job's stdout/stderr linked into the run dir."""
    for name, target in (("slurm.out", job.paths.stdout), ("slurm.err", job.paths.stderr)):
        link = run.path / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(target).resolve())
    write_json(
        run.path / "slurm.json",
        {
            "job_id": job.job_id,
            "submitted": time.time(),
            "token": token,
            "submitit_folder": str(Path(job.paths.folder).resolve()),
        },
    )


def wait(job_ids: list[str], poll_s: float = 2.0, runs: list[PlannedRun] = ()) -> None:
    """Block until none of the jobs is in the queue any more (squeue; no accounting needed), printing a line
    as each of `runs` ends (from its status file: SLURM accounting may lag)."""
    from launchers.progress import SweepProgress, outcome
    from petsweep.records.labels import display, of_run

    pending, watching = set(job_ids), {run.path: time.time() for run in runs}
    progress = SweepProgress(len(watching))

    def report(final: bool = False) -> None:
        for path, since in list(watching.items()):
            state = RunDir(path).state()
            if final or state in ("COMPLETED", "FAILED", "CANCELLED"):
                code = 0 if state == "COMPLETED" else 1
                name = display(path.name, of_run(path))  # what differs (the sweep's sweep.json)
                progress.finished(name, outcome(path, code, None), time.time() - since)
                del watching[path]

    while pending:
        report()
        listed = slurm_queue()
        if listed is None:
            raise PetsweepError(
                "launcher: squeue stopped answering while waiting for the jobs; follow them with "
                "`petsweep status <sweep dir>`"
            )
        pending &= listed
        if pending:
            time.sleep(poll_s)
    report(final=True)  # what ended between the last look and the jobs leaving the queue


def cancel(run_path: Path) -> bool:
    """scancel the SLURM job of a run, if it has one."""
    meta = run_path / "slurm.json"
    if not meta.exists():
        return False
    job_id = json.loads(meta.read_text())["job_id"]
    return subprocess.run(["scancel", job_id], capture_output=True).returncode == 0
