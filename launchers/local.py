"""The local launcher: a pool of `python run.py <overrides>` processes, one GPU each, or a share of the cores.

Each run is its own process, so a crash, a NaN or an out-of-memory kill takes down that run only.
Measured on 2 cores: two single-thread runs side by side do about 1.3x the work of one two-thread run, so on
CPU the pool runs as many runs as there are cores, one thread each, unless told otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from petsweep.status import LAUNCHED_AT_ENV, sweep_cancelled


@dataclass
class Slot:
    """What one concurrent run gets: a GPU (CUDA_VISIBLE_DEVICES) or a number of CPU threads."""

    gpu: int | None
    threads: int


def slots(max_parallel: int | None, threads_per_run: int | None) -> list[Slot]:
    """One slot per GPU when GPUs exist, else the cores split among the concurrent runs."""
    import torch

    gpus = torch.cuda.device_count()
    cores = os.cpu_count() or 1
    if gpus:
        n = min(max_parallel or gpus, gpus)
        return [Slot(gpu=i, threads=threads_per_run or max(1, cores // n)) for i in range(n)]
    threads = threads_per_run or 1
    n = max_parallel or max(1, cores // threads)
    return [Slot(gpu=None, threads=threads_per_run or max(1, cores // n)) for _ in range(n)]


NOT_STARTED = -1  # the exit code of a run the pool did not start because the sweep was cancelled


def run_one(overrides: list[str], slot: Slot, log_file: Path, script: str, launched_at: float) -> int:
    """Run one `python run.py ...` in `slot`, stdout and stderr to `log_file`; returns the exit code."""
    env = dict(os.environ, OMP_NUM_THREADS=str(slot.threads), **{LAUNCHED_AT_ENV: repr(launched_at)})
    if slot.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as log:
        command = [sys.executable, script, *overrides, f"trainer.num_threads={slot.threads}"]
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode


def run_pool(
    jobs: list[list[str]],
    log_files: list[Path],
    script: str,
    max_parallel: int | None = None,
    threads_per_run: int | None = None,
    sweep_dir: Path | None = None,
) -> list[int]:
    """Run every job, at most len(slots) at a time; returns exit codes in job order (NOT_STARTED for the jobs
    left when `petsweep cancel` stops the sweep in `sweep_dir`)."""
    launched_at = time.time()
    free = slots(max_parallel, threads_per_run)
    import queue

    pool_slots: queue.Queue = queue.Queue()
    for slot in free:
        pool_slots.put(slot)

    def work(index: int) -> int:
        slot = pool_slots.get()
        try:
            if sweep_dir is not None and sweep_cancelled(sweep_dir, launched_at):
                return NOT_STARTED
            return run_one(jobs[index], slot, log_files[index], script, launched_at)
        finally:
            pool_slots.put(slot)

    with ThreadPoolExecutor(max_workers=len(free)) as executor:
        return list(executor.map(work, range(len(jobs))))
