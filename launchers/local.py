"""The local launcher: a pool of slots (GPUs handed out per run, or a share of the cores), each running its
runs in a warm worker (launchers.warm: imports paid once per slot), or each in a fresh process.

A crash, a NaN or an out-of-memory kill takes down that run only: a run that raises is recorded and its
worker goes on; a worker that dies is replaced. A run that asks for G GPUs (its backbone's `resources.gpus`)
waits until G are free and gets them together; its process then starts G ranks (petsweep.run.spawn). Measured
on 2 cores: two single-thread runs side by side do about 1.3x the work of one two-thread run, so on CPU the
pool runs as many runs as there are cores, one thread each, unless told otherwise.

A signal to the sweep stops it, however it came: SIGTERM to its pid alone (`kill`, `timeout`, a scheduler)
or Ctrl-C (SIGINT to its process group, which holds the sweep alone: each run's process has a group of its
own). The pool hands the signal on to every process running a run (warm.RunProcesses), which records
CANCELLED as a plain run does; no queued run starts; once every running one has ended, the sweep exits 143
(SIGTERM) or 130 (Ctrl-C) with one line counting what its runs came to (errors.SweepStopped). A second
signal is handed on too while the sweep waits: it never leaves a run's process behind. The pool takes
SIGINT even where it started with SIGINT ignored (`run.py -m ... &` in a script), as its runs do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from launchers.warm import Job, RunProcesses, WarmWorkers, slot_env
from petsweep.records.status import CANCELLED, COMPLETED, FAILED, RunDir, sweep_cancelled
from petsweep.spec.errors import EXIT_CANCELLED, EXIT_INTERRUPTED, SweepStopped
from petsweep.spec.shape import run_shape


@dataclass
class Slot:
    """What one run gets: GPUs (CUDA_VISIBLE_DEVICES; None on CPU) and a number of CPU threads."""

    gpus: list[int] | None
    threads: int


class GpuPool:
    """The machine's GPUs, handed to runs whole: a run of G GPUs waits until G are free, then takes them
    together (never a part of them, which could deadlock two big runs against each other)."""

    def __init__(self, count: int):
        self.count, self.free = count, list(range(count))
        self._changed = threading.Condition()

    def take(self, wanted: int) -> list[int]:
        wanted = max(1, min(wanted, self.count))  # a run asking for more than the machine has runs on all
        with self._changed:
            self._changed.wait_for(lambda: len(self.free) >= wanted)
            taken, self.free = self.free[:wanted], self.free[wanted:]
            return taken

    def give(self, gpus: list[int]) -> None:
        with self._changed:
            self.free = sorted(self.free + gpus)
            self._changed.notify_all()


def cpu_slots(max_parallel: int | None, threads_per_run: int | None) -> list[Slot]:
    """The cores split among the concurrent runs (one thread each by default)."""
    cores = os.cpu_count() or 1
    threads = threads_per_run or 1
    n = max_parallel or max(1, cores // threads)
    return [Slot(gpus=None, threads=threads_per_run or max(1, cores // n)) for _ in range(n)]


def gpus_wanted(cfg: dict) -> int:
    """The GPUs a run takes from the pool on a machine with GPUs: one per rank of its world (spec/shape.py; a
    run of several nodes runs them all on this machine), so a CPU backbone's run takes one too."""
    return run_shape(cfg).world_size


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def local_jobs(
    runs: list, overrides: list[list[str]], logs_dir: Path, fuse: int = 1, fuse_tokens: int | None = None
) -> list[Job]:
    """The pool's jobs for `runs` (planned runs to launch, with each run's overrides: its provenance): a job
    per run, or with fuse > 1 a job per fused group where launchers.fusion groups them."""
    from launchers.fusion import token_budget, units

    solo = {
        run.path: Job(run.resolved(o), logs_dir / f"{run.path.name}.log") for run, o in zip(runs, overrides)
    }
    if fuse < 2:
        return list(solo.values())
    jobs = []
    for unit in units(runs, fuse, token_budget(fuse_tokens, gpu_count())):
        members = [solo[run.path] for run in unit.runs]
        log = logs_dir / f"fused-{len(members)}-{members[0].path.name}.log"
        jobs.append(members[0] if len(members) == 1 else Job.group(members, log))
    return jobs


NOT_STARTED = -1  # the exit code of a run the pool did not start because the sweep was cancelled


class FreshProcesses:
    """Process-per-run (hydra.launcher.warm_workers=false): each run a new process, handed the run as the plan
    resolved it (its ResolvedRun as a JSON file, on the slot's threads), which it executes as run.py would
    (`python -m petsweep.run.worker --run <spec file>`): it composes, validates and hashes nothing again, so
    it writes where the plan planned. Its exit code is run.py's; a process killed mid-run leaves its run
    RUNNING under its pid, which then reads INTERRUPTED."""

    def __init__(self, launched_at: float, running: RunProcesses):
        self.launched_at, self.running = launched_at, running

    def run(self, job: Job, threads: int, gpus: list[int] | None) -> list[int] | None:
        """The run's exit code; None where the sweep was stopping and the run not started."""
        if self.running.stopping:
            return None
        job.log.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec:
            json.dump(job.resolved.with_threads(threads).to_dict(), spec)
        try:
            with job.log.open("w") as log:
                command = [sys.executable, "-m", "petsweep.run.worker", "--run", spec.name]
                env = slot_env(threads, gpus, self.launched_at)
                # a group of its own: the sweep hands its stop signals on (RunProcesses), a terminal does not
                proc = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env, process_group=0
                )
            if not self.running.started(proc):  # stopped while it started: it ends before its claim
                proc.send_signal(signal.SIGTERM)
            try:
                return [proc.wait()]
            finally:
                self.running.ended(proc)
        finally:
            os.unlink(spec.name)

    def close(self) -> None:
        pass


def run_pool(
    jobs: list[Job],
    max_parallel: int | None = None,
    threads_per_run: int | None = None,
    sweep_dir: Path | None = None,
    gpus_per_job: list[int] | None = None,
    on_done=None,
    warm: bool = True,
) -> list[list[int]]:
    """Run every job (a run, or a fused group); returns each job's exit codes, one per run, in job order
    (NOT_STARTED for the jobs left when `petsweep cancel` stops the sweep in `sweep_dir`). With GPUs, job i
    takes `gpus_per_job[i]` of them (default 1) and the cores are shared in proportion; without, at most
    len(cpu_slots) jobs run at once. `warm`: runs go to warm workers (launchers.warm), else each to a fresh
    process (FreshProcesses). `on_done(index, codes, seconds)` is called as each job ends (from the pool's
    threads).
    """
    launched_at = time.time()
    running = RunProcesses()
    runner = WarmWorkers(launched_at, running) if warm else FreshProcesses(launched_at, running)
    gpus = gpu_count()
    if gpus:
        pool = GpuPool(gpus)
        cores = os.cpu_count() or 1
        wanted = gpus_per_job or [1] * len(jobs)
        workers = min(max_parallel or gpus, gpus)

        def acquire(index: int) -> Slot:
            taken = pool.take(wanted[index])
            return Slot(gpus=taken, threads=threads_per_run or max(1, cores * len(taken) // gpus))

        def release(slot: Slot) -> None:
            pool.give(slot.gpus)
    else:
        import queue

        free: queue.Queue = queue.Queue()
        slots = cpu_slots(max_parallel, threads_per_run)
        for slot in slots:
            free.put(slot)
        workers = len(slots)

        def acquire(index: int) -> Slot:
            return free.get()

        def release(slot: Slot) -> None:
            free.put(slot)

    def work(index: int) -> list[int]:
        slot = acquire(index)
        codes = None
        try:
            if not running.stopping and not (
                sweep_dir is not None and sweep_cancelled(sweep_dir, launched_at)
            ):
                started = time.time()
                codes = runner.run(jobs[index], slot.threads, slot.gpus)
        finally:
            release(slot)
        if codes is None:
            return [NOT_STARTED] * len(jobs[index].runs)
        if on_done is not None:
            on_done(index, codes, time.time() - started)
        return codes

    executor = ThreadPoolExecutor(max_workers=workers)
    stopped_by = SweepSignals(running)
    try:
        stopped_by.listen()  # from here on a signal stops the runs and the sweep waits for them
        futures = [executor.submit(work, index) for index in range(len(jobs))]
        codes = [future.result() for future in futures]
        stopped_by.raise_if_stopped(jobs, codes)
        return codes
    finally:
        executor.shutdown(wait=True)
        runner.close()
        stopped_by.restore()


class SweepSignals:
    """The sweep's stop signals while its pool runs: SIGTERM, SIGINT (Ctrl-C) and SIGHUP (its terminal closed;
    left alone where ignored, as under nohup). The first stops the sweep: no run starts any more, and the
    processes running runs get the signal (SIGTERM for SIGHUP), each then recording CANCELLED; a later one is
    handed on the same way, so that the sweep always waits for its runs' processes and leaves none behind.
    Where the pool does not run on the main thread (which alone can take signals), the main thread's own
    handlers stay (stop_on_signals)."""

    HANDED_ON = {signal.SIGTERM: signal.SIGTERM, signal.SIGINT: signal.SIGINT, signal.SIGHUP: signal.SIGTERM}
    EXIT_STATUS = {signal.SIGINT: EXIT_INTERRUPTED}  # others: EXIT_CANCELLED

    def __init__(self, running: RunProcesses):
        self.running = running
        self.first: int | None = None  # the signal that stopped the sweep
        self.previous: dict = {}

    def listen(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.HANDED_ON:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            self.previous[sig] = signal.signal(sig, self.stop)

    def stop(self, signum: int, frame=None) -> None:
        if self.first is None:
            self.first = signum
        self.running.stop(self.HANDED_ON[signum])

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def raise_if_stopped(self, jobs: list[Job], codes: list[list[int]]) -> None:
        """Once every run's process has ended: where a signal stopped the sweep, SweepStopped, with what its
        runs came to, read from their records."""
        if self.first is None:
            return
        came_to = dict.fromkeys(
            ["recorded CANCELLED", "finished", "failed", "left INTERRUPTED", "not started"], 0
        )
        for job, job_codes in zip(jobs, codes):
            for run, code in zip(job.runs, job_codes):
                came_to[_came_to(run.path, code)] += 1
        counts = ", ".join(f"{n} {what}" for what, n in came_to.items() if n)
        name = "Ctrl-C" if self.first == signal.SIGINT else signal.Signals(self.first).name
        status = self.EXIT_STATUS.get(self.first, EXIT_CANCELLED)
        raise SweepStopped(name, f"of {sum(came_to.values())} run(s) to run, {counts}", status)


def _came_to(run_path: Path, code: int) -> str:
    """What a run of a stopped sweep came to, from its record (the code only where it never started)."""
    state = RunDir(run_path).state() if code != NOT_STARTED else None
    if state is None:
        return "not started"
    # RUNNING or QUEUED: its process ended without recording its end (a full disk), which reads INTERRUPTED
    return {CANCELLED: "recorded CANCELLED", COMPLETED: "finished", FAILED: "failed"}.get(
        state, "left INTERRUPTED"
    )
