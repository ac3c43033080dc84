"""The launcher's side of warm workers (petsweep.run.worker): start them, hand them runs, notice when one
dies.

A worker belongs to a slot (its threads, and on GPU machines the GPUs it may see, which CUDA fixes when the
process starts), so a run always lands in a worker set up for the slot the pool gave it. A worker that dies
mid-run leaves its run RUNNING under the worker's pid: the run is recorded FAILED with the signal, and the
slot gets a fresh worker for its next run.

A worker (as a fresh run process) is in a process group of its own: a signal to the sweep's group (a
terminal's Ctrl-C) reaches the sweep alone, which hands it on to each process running a run
(RunProcesses.stop), so every process that runs a run gets a stop signal once, however the sweep was
signalled (`kill`, `timeout`, a scheduler, Ctrl-C).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from petsweep.records.status import COMPLETED, LAUNCHED_AT_ENV, RUNNING, RunDir
from petsweep.run.spawn import exit_text
from petsweep.spec.resolved import ResolvedRun

CLOSE_TIMEOUT_S = 30


@dataclass
class Job:
    """One run as the pool hands it out: the run as the plan resolved it (what a warm worker and a fresh
    process take), and where its output goes; or a fused group of such runs (`members`), which a warm worker
    trains together (launchers/fusion.py)."""

    resolved: ResolvedRun
    log: Path
    members: list[Job] = field(default_factory=list)

    @classmethod
    def group(cls, members: list[Job], log: Path) -> Job:
        return cls(members[0].resolved, log, members)

    @property
    def cfg(self) -> dict:
        return self.resolved.config

    @property
    def path(self) -> Path:
        return Path(self.resolved.run_dir)

    @property
    def runs(self) -> list[Job]:
        return self.members or [self]


def slot_env(threads: int, gpus: list[int] | None, launched_at: float) -> dict:
    """The environment of a run's process (or worker): its threads, its GPUs, and when the launch began."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), **{LAUNCHED_AT_ENV: repr(launched_at)})
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    return env


class RunProcesses:
    """The processes running runs now, which a stopped sweep signals: `started(proc)` before a process is
    given a run (False once the sweep is stopping: the run is not started), `ended(proc)` once it answers
    or dies; `stop(signum)` sends the signal to every one running (each run records CANCELLED at once, as a
    plain run does on SIGTERM), and to none started later. Called from the sweep's signal handler: the lock is
    reentrant, since a second signal can interrupt the handler of the first in the same thread."""

    def __init__(self):
        self._lock = threading.RLock()
        self._running: set[subprocess.Popen] = set()
        self.stopping = False

    def started(self, proc: subprocess.Popen) -> bool:
        with self._lock:
            if not self.stopping:
                self._running.add(proc)
            return not self.stopping

    def ended(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop(self, signum: int) -> None:
        with self._lock:
            self.stopping = True
            for proc in list(self._running):
                proc.send_signal(signum)  # one that has just ended is left alone


class Worker:
    """One `python -m petsweep.run.worker` process: runs go in on its stdin, exit codes come back on a
    pipe."""

    def __init__(self, env: dict):
        read_end, write_end = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "petsweep.run.worker", str(write_end)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # between runs; during one, its output goes to the run's log
            stderr=subprocess.DEVNULL,
            pass_fds=(write_end,),
            env=env,
            text=True,
            process_group=0,  # the sweep hands its stop signals on (RunProcesses), a terminal does not
        )
        os.close(write_end)
        self.answers = os.fdopen(read_end)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job: Job, threads: int, running: RunProcesses) -> list[int] | None:
        """Run `job` (a run, or a fused group) in this worker: an exit code per run, or for each the negative
        signal that killed the worker; None where the sweep was stopping (`running`): the job is not given."""
        specs = [r.resolved.with_threads(threads).to_dict() for r in job.runs]
        request = {"group": specs} if job.members else {"run": specs[0]}
        if not running.started(self.proc):
            return None
        try:
            self.proc.stdin.write(json.dumps({**request, "log": str(job.log)}) + "\n")
            self.proc.stdin.flush()
            answer = self.answers.readline()
        except BrokenPipeError:
            answer = ""
        finally:
            running.ended(self.proc)
        if answer:
            answer = json.loads(answer)
            if answer.get("exiting"):  # it could not record a run's end: it exits so that the run is not its
                self.proc.wait()
            return answer["codes"]
        code = self.proc.wait()
        for run in job.runs:
            _record_death(run, job.log, self.proc.pid, code)
        # a fused group's member that ended before the worker died keeps its record and its code
        return [0 if RunDir(run.path).state() == COMPLETED else code or 1 for run in job.runs]

    def close(self) -> None:
        """Let the worker finish and exit (its stdin closes); kill it if it does not within the timeout."""
        if self.alive:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.answers.close()


def _record_death(run: Job, log_file: Path, pid: int, code: int) -> None:
    """The worker died under `run`: FAILED with how it died, if the run was still this worker's."""
    record = RunDir(run.path)
    status = record.status() or {}
    if status.get("state") == RUNNING and status.get("pid") == pid:
        # "was killed by signal 9 (SIGKILL)", or "exited with 1"
        error = f"the worker process running it {'was ' if code < 0 else ''}{exit_text(code)}"
        try:
            record.set_status("FAILED", error=error)
            with log_file.open("a") as log:
                log.write(f"error: {record.path.name}: {error}\n")
        except OSError:  # a full or read-only disk: its process is gone, so the run reads INTERRUPTED
            pass


class WarmWorkers:
    """Workers kept per slot between runs; `run(job, threads, gpus)` reuses an idle worker of that slot."""

    def __init__(self, launched_at: float, running: RunProcesses):
        self.launched_at, self.running = launched_at, running
        self._idle: dict[tuple, list[Worker]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _slot(threads: int, gpus: list[int] | None) -> tuple:
        return threads, tuple(gpus) if gpus is not None else None

    def _take(self, threads: int, gpus: list[int] | None) -> Worker:
        key = self._slot(threads, gpus)
        with self._lock:
            while self._idle.get(key):
                worker = self._idle[key].pop()
                if worker.alive:
                    return worker
                worker.close()
            self._close_overlapping(set(gpus or ()))
        return Worker(slot_env(threads, gpus, self.launched_at))

    def _close_overlapping(self, gpus: set[int]) -> None:
        """Idle workers on any of `gpus` go: each holds a CUDA context on its GPUs."""
        for key, workers in self._idle.items():
            if gpus & set(key[1] or ()):
                for worker in workers:
                    worker.close()
                workers.clear()

    def run(self, job: Job, threads: int, gpus: list[int] | None) -> list[int] | None:
        """The job's exit codes (Worker.run); None where the sweep was stopping and the job not started."""
        worker = self._take(threads, gpus)
        code = worker.run(job, threads, self.running)
        with self._lock:
            if worker.alive:
                self._idle.setdefault(self._slot(threads, gpus), []).append(worker)
            else:
                worker.close()
        return code

    def close(self) -> None:
        with self._lock:
            for workers in self._idle.values():
                for worker in workers:
                    worker.close()
            self._idle.clear()
