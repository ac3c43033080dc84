"""`petsweep plan`, `status` and `cancel`: tables and actions that read the runs' files on disk only."""

from __future__ import annotations

import os
import signal
import socket
from collections import Counter
from pathlib import Path

from launchers.planning import PlannedRun, run_status
from launchers.sweep import SWEEP_MARKER
from petsweep.errors import PetsweepError
from petsweep.status import RunDir, State


def estimate_hours(runs: list[PlannedRun]) -> None:
    """Fill run.extra with hours, GPU-hours, whether it is a guess and its basis (see launchers.costing)."""
    from launchers.costing import estimate, measure

    measured = []  # every finished run in the planned runs' sweep dirs, planned or not
    for sweep_dir in sorted({run.path.parent for run in runs}):
        for path in sorted(sweep_dir.glob("*/result.json")):
            result = RunDir(path.parent).result()
            found = measure(result["config"], result) if result and result.get("config") else None
            if found:
                measured.append(found)
    for run in runs:
        seconds, basis, guess = estimate(run.cfg, run.extra["total_params"], measured)
        gpus = int(run.cfg["backbone"]["resources"].get("gpus", 0) or 0)
        run.extra.update(hours=seconds / 3600, gpu_hours=seconds / 3600 * gpus, guess=guess, basis=basis)


def plan_table(runs: list[PlannedRun]) -> str:
    estimate_hours(runs)
    lines = [
        f"{'status':<11} {'run':<58} {'trainable':>13} {'gpus':>4} {'mem':>5} {'time':>6} {'hours':>9} "
        f"{'gpu-h':>9}"
    ]
    for r in runs:
        res = r.cfg["backbone"]["resources"]
        mark = "~" if r.extra["guess"] else " "
        lines.append(
            f"{r.status:<11} {r.path.name:<58} {r.extra['trainable_params']:>13,} {res.get('gpus', 0):>4} "
            f"{res.get('mem_gb', '-'):>5} {res.get('time_min', '-'):>6} {mark}{r.extra['hours']:>8.4f} "
            f"{r.extra['gpu_hours']:>9.3f}"
        )
    todo = [r for r in runs if r.status != State.COMPLETED]
    lines.append(
        f"total: {len(runs)} runs, {len(todo)} to run, "
        f"{sum(r.extra['gpu_hours'] for r in todo):.2f} GPU-hours to go "
        f"({sum(r.extra['hours'] for r in todo):.3f} run-hours, training and evaluation)"
    )
    bases = sorted({r.extra["basis"] for r in todo})
    lines += [f"  estimated from: {b}" for b in bases]
    notes = Counter(note for r in runs for note in r.extra.get("count_notes", []))
    lines += [f"  count note ({n} runs): {note}" for note, n in notes.items()]
    if any(r.extra["guess"] for r in todo):
        lines.append(
            "  ~ marks a guess from FLOPs: no finished run of that backbone and method on that device yet"
        )
    return "\n".join(lines)


def sweep_runs(root: Path) -> list[RunDir]:
    """The run directories of a sweep dir; not a petsweep sweep dir is one clear error."""
    root = Path(root)
    runs = [RunDir(p.parent) for p in sorted(root.glob("*/status.json"))] if root.is_dir() else []
    if not root.is_dir() or not ((root / SWEEP_MARKER).exists() or runs):
        raise PetsweepError(
            f"{root} is not a petsweep sweep directory (no {SWEEP_MARKER}, no run dirs with "
            f"status.json); give <runs_root>/<sweep_name>"
        )
    return runs


def status_table(root: Path) -> str:
    from launchers.planning import cached_queue

    rows, counts, queue = [], {}, cached_queue()
    for run in sweep_runs(root):
        state = run_status(run.path, queue)
        counts[state] = counts.get(state, 0) + 1
        result = run.result() if state == State.COMPLETED else None
        detail = f"{result['metric']} {result['score']:.4f}" if result else ""
        if (run.path / "error.txt").exists() and state != State.COMPLETED:
            detail = f"{(run.status() or {}).get('error', '')[:100]}  traceback: {run.path / 'error.txt'}"
        rows.append(f"{state:<11} {run.path.name:<58} {detail}")
    summary = ", ".join(f"{n} {s.word}" for s, n in sorted(counts.items()))
    return "\n".join(rows + [f"{sum(counts.values())} runs: {summary}"])


def cancel(root: Path) -> list[str]:
    """Stop the sweep's queued and running runs: scancel for SLURM jobs, SIGTERM for local processes.

    A stopped run records CANCELLED (a running one from its SIGTERM handler); a rerun resumes it.
    """
    from launchers import slurm
    from launchers.planning import cached_queue
    from petsweep.status import CANCELLED, cancel_sweep

    runs = sweep_runs(root)  # checked before the marker is written: a wrong dir is an error, not a new file
    # first: the local pool starts no further run, and a run started meanwhile stops at once
    cancel_sweep(root)
    queue = cached_queue()
    stopped = []
    for run in runs:
        status, state = run.status() or {}, run_status(run.path, queue)
        if state not in (State.RUNNING, State.QUEUED):
            continue
        if slurm.cancel(run.path):
            if state == State.QUEUED:
                run.set_status(CANCELLED, error="cancelled before it started")
        elif status.get("host") == socket.gethostname():
            os.kill(status["pid"], signal.SIGTERM)
        else:
            continue
        stopped.append(run.path.name)
    return stopped
