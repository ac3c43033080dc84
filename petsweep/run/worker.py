"""Warm workers: one process that imports torch, transformers and peft once and runs runs one after another.

A sweep of short runs paid about 13 s per run for a fresh `python run.py` (imports, two Hydra compositions)
against seconds of work. A worker takes each run as the sweep planned it (a ResolvedRun: composed and
validated once, by the plan), runs it in-process exactly as `run.py` would (petsweep.run.app.execute), and
reports an exit code that means what `run.py`'s would: 0 done, 1 a failure (recorded FAILED with its
traceback), 2 a config refused, 143 cancelled.

The local launcher talks to a worker over two pipes: jobs arrive on stdin as JSON lines, and each answer
goes back on the file descriptor named on the command line, since stdout and stderr are the current run's
log file. A worker that dies mid-run (segfault, OOM kill, kill -9) is seen by the launcher, which records
the run FAILED with the signal (launchers.local).

    python -m petsweep.run.worker <answer fd>
    python -m petsweep.run.worker --rank <spec file>       # one rank of a multi-rank run (petsweep.run.spawn)
    python -m petsweep.run.worker --run <spec file>        # one run in a fresh process (launchers.local)
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import json
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import NoReturn

from petsweep.spec.errors import EXIT_FAILED, exit_on_user_error, stop_on_signals


def run_job(resolved: dict, claim_token: str | None = None) -> int:
    """Run one planned run (a ResolvedRun's dict) in this process; returns the exit code `python run.py`
    would have returned.

    A failure is recorded on the run by petsweep.run.app (FAILED, error.txt) before it reaches here; this
    prints what run.py would print and returns, so the next run of the worker goes on.
    """
    from petsweep.run.app import execute
    from petsweep.spec.errors import RunCancelled, report_user_error
    from petsweep.spec.resolved import ResolvedRun
    from petsweep.train import resources

    run = ResolvedRun.from_dict(resolved)
    resources.begin_run(run.overrides)  # its peak memory, start-up time and overrides are its own
    try:
        execute(run, claim_token=claim_token)
        return 0
    except (Exception, RunCancelled) as err:
        status = report_user_error(err)
        if status is None:
            with contextlib.suppress(OSError):  # the log on a full disk
                traceback.print_exc()
        return status or EXIT_FAILED
    finally:
        _release_memory()


def run_fused(members: list[dict]) -> list[int]:
    """Train a fused group (petsweep.run.group) of planned runs (ResolvedRun dicts, each with its own
    command-line overrides for its provenance.json) in this process; an exit code per run."""
    from petsweep.run.group import execute_group
    from petsweep.spec.resolved import ResolvedRun
    from petsweep.train import resources

    resources.begin_run()
    try:
        return execute_group([ResolvedRun.from_dict(m) for m in members])
    except Exception:  # what no member's own handling caught: every run of the group failed
        with contextlib.suppress(OSError):
            traceback.print_exc()
        return [EXIT_FAILED] * len(members)
    finally:
        _release_memory()


def _release_memory() -> None:
    """What one run held (model, optimizer, data) goes before the next run loads its own."""
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@contextlib.contextmanager
def output_to(log_file: Path):
    """stdout and stderr of this process (file descriptors 1 and 2, so C libraries too) into `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_file.open("a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # a log on a full disk: what is not written is lost, not the run
            sys.stdout.flush()
        with contextlib.suppress(OSError):
            sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def serve(answers) -> None:
    """Take jobs from stdin until it closes, {"run": {...}, "log": path} or {"group": [...], "log": path}
    (ResolvedRun dicts); answer each with {"codes": [int, ...]}, a code per run."""
    from petsweep.run.app import console_logging  # the imports a run needs, paid once, before the first job

    console_logging()
    for line in sys.stdin:
        job = json.loads(line)
        with output_to(Path(job["log"])):
            codes = run_fused(job["group"]) if "group" in job else [run_job(job["run"])]
        # a run whose end could not be recorded (a full disk) reads RUNNING under this pid: the worker exits,
        # so that it reads INTERRUPTED, and says so in its answer (the launcher starts a fresh one)
        exiting = stands_behind_a_run(job["group"] if "group" in job else [job["run"]])
        answers.write(json.dumps({"codes": codes, "exiting": exiting}) + "\n")
        answers.flush()
        if exiting:
            return


def stands_behind_a_run(runs: list[dict]) -> bool:
    """Whether a run of a job this process ran (ResolvedRun dicts) still reads RUNNING under it: its end
    could not be recorded (a full or read-only disk). Read from the runs' status.json, which names who runs
    them."""
    from petsweep.records.status import RUNNING, RunDir

    for run in runs:
        try:
            status = RunDir(Path(run["run_dir"])).status() or {}
        except OSError:
            continue
        mine = status.get("pid") == os.getpid() and status.get("host") == socket.gethostname()
        if status.get("state") == RUNNING and mine:
            return True
    return False


def run_rank(spec_file: str) -> int:
    """One rank of a multi-rank run that petsweep.run.spawn started: the same run (its ResolvedRun, device
    and precision as the parent decided them), joined to the others through the environment the parent
    set. A rank that is stopped (a signal, from its start: stop_on_signals), or that fails once rank 0 has
    recorded the run CANCELLED (`petsweep cancel` signals rank 0 alone: the others lose their peer), exits
    143 without a word: the parent says it once for the run (spawn.run_ranks)."""
    from petsweep.records.status import CANCELLED, RunDir
    from petsweep.spec.errors import EXIT_CANCELLED, RunCancelled
    from petsweep.spec.resolved import ResolvedRun

    stop_on_signals()  # Ctrl-C or a cancel while importing torch: RunCancelled, not a KeyboardInterrupt
    started = time.time()
    resolved = ResolvedRun.from_dict(json.loads(Path(spec_file).read_text()))
    with exit_on_user_error():
        try:
            from petsweep.run.app import execute

            execute(resolved)
        except RunCancelled:
            sys.exit(EXIT_CANCELLED)
        except Exception:
            status = RunDir(Path(resolved.run_dir)).status() or {}
            # rank 0 recorded this attempt CANCELLED (an earlier attempt's record: this failure is news)
            if status.get("state") == CANCELLED and status.get("updated", 0) >= started:
                sys.exit(EXIT_CANCELLED)
            raise
    return 0


def end_rank(spec_file: str) -> NoReturn:
    """Run one rank (run_rank) and end this process with its exit status. A rank that did its part ends
    without the interpreter's teardown: once its work is done and its process group destroyed, the teardown
    of torch's and gloo's C++ state can only lose it the run (a rank aborted in it now and then, "terminate
    called without an active exception", SIGABRT, and the finished run was recorded FAILED). Its threads
    are joined and atexit's functions run as at Python's exit, and Python's and C's buffered output is
    flushed. A rank that failed exits as Python does (its traceback through sys.excepthook, W&B told the
    exit status, Ctrl-C as SIGINT)."""
    run_rank(spec_file)  # raises (or exits) where the rank failed
    threading._shutdown()  # as Python's exit: its threads joined, executors' last tasks run (review Z)
    atexit._run_exitfuncs()  # logging's handlers flushed and closed, W&B's runs finished
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)  # what C code printed (DeepSpeed's ops print through printf)
    os._exit(0)


def run_fresh(spec_file: str) -> int:
    """One planned run in a process of its own (the local pool with hydra.launcher.warm_workers=false): the
    run as the plan resolved it (a ResolvedRun as JSON, its threads set by the pool), executed as `python
    run.py` executes a plain run, with its log, exit codes and signals, but composed, validated and hashed
    nowhere again: its id and directory are the plan's."""
    stop_on_signals()  # as run.py: also where the sweep started with SIGINT ignored
    with exit_on_user_error():
        from petsweep.run.app import console_logging, execute
        from petsweep.spec.resolved import ResolvedRun
        from petsweep.train import resources

        resolved = ResolvedRun.from_dict(json.loads(Path(spec_file).read_text()))
        resources.use_overrides(resolved.overrides)  # its provenance's, where argv is this module's
        console_logging()
        execute(resolved)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--rank":
        end_rank(sys.argv[2])
    if sys.argv[1] == "--run":
        sys.exit(run_fresh(sys.argv[2]))
    with os.fdopen(int(sys.argv[1]), "w") as answer_pipe:
        serve(answer_pipe)
