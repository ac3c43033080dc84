"""`petsweep plan`, `status` and `cancel`: tables and actions that read the runs' files on disk only."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

from launchers.planning import DONE, QUEUED_S, RUNNING_S, PlannedRun, run_status
from launchers.sweep import SWEEP_MARKER
from petsweep.errors import PetsweepError
from petsweep.status import RunDir

# A guess where no finished run of the backbone has measured its throughput: sustained FLOP/s of one GPU
# (about a third of an A100's bf16 peak), and 6 (full) or 4 (frozen weights: no weight gradients) FLOPs
# per parameter and token.
GUESS_FLOPS_PER_S = 1e14


def _count_key(cfg: dict) -> str:
    return json.dumps([cfg["backbone"], cfg["method"], cfg["task"].get("label_words")], sort_keys=True, default=str)


def trainable_counts(runs: list[PlannedRun]) -> None:
    """Fill run.extra with parameter counts (meta device), one model build per distinct config."""
    from petsweep.backbones import build_on_meta
    from petsweep.config import resolve_run
    from petsweep.params import apply_method

    cache: dict[str, dict] = {}
    for run in runs:
        key = _count_key(run.cfg)
        if key not in cache:
            spec = resolve_run(run.cfg)
            _, _, counts = apply_method(build_on_meta(spec.backbone, spec.task.num_labels or 2), spec)
            cache[key] = counts.as_dict()
        run.extra.update(cache[key])


def _tokens(cfg: dict) -> int:
    t = cfg["trainer"]
    return int(t["max_steps"] * t["batch_size"] * t["grad_accum"] * cfg["task"]["max_length"])


def estimate_hours(runs: list[PlannedRun]) -> None:
    """Fill run.extra["hours"] (and whether it is a guess) from measured throughput of finished runs."""
    measured: dict[tuple[str, str], float] = {}
    for run in runs:
        result = RunDir(run.path).result() if run.status == DONE else None
        if result and result.get("tokens_per_s"):
            measured[(run.cfg["backbone"]["name"], run.cfg["method"]["name"])] = result["tokens_per_s"]
    by_backbone = {b: v for (b, _), v in measured.items()}
    for run in runs:
        key = (run.cfg["backbone"]["name"], run.cfg["method"]["name"])
        rate = measured.get(key) or by_backbone.get(key[0])
        if rate:
            hours, guess = _tokens(run.cfg) / rate / 3600, key not in measured
        else:
            flops = (6 if key[1] == "full" else 4) * run.extra["total_params"] * _tokens(run.cfg)
            hours, guess = flops / GUESS_FLOPS_PER_S / 3600, True
        gpus = int(run.cfg["backbone"]["resources"].get("gpus", 0) or 0)
        run.extra.update(hours=hours, gpu_hours=hours * gpus, guess=guess)


def plan_table(runs: list[PlannedRun]) -> str:
    trainable_counts(runs)
    estimate_hours(runs)
    lines = [f"{'status':<11} {'run':<58} {'trainable':>13} {'gpus':>4} {'mem':>5} {'time':>6} {'hours':>9} "
             f"{'gpu-h':>9}"]
    for r in runs:
        res = r.cfg["backbone"]["resources"]
        mark = "~" if r.extra["guess"] else " "
        lines.append(f"{r.status:<11} {r.path.name:<58} {r.extra['trainable_params']:>13,} {res.get('gpus', 0):>4} "
                     f"{res.get('mem_gb', '-'):>5} {res.get('time_min', '-'):>6} {mark}{r.extra['hours']:>8.4f} "
                     f"{r.extra['gpu_hours']:>9.3f}")
    todo = [r for r in runs if r.status != DONE]
    lines.append(f"total: {len(runs)} runs, {len(todo)} to run, "
                 f"{sum(r.extra['gpu_hours'] for r in todo):.2f} GPU-hours to go "
                 f"({sum(r.extra['hours'] for r in todo):.2f} run-hours; ~ marks a guess from FLOPs, no measured "
                 f"throughput of that backbone and method yet)")
    return "\n".join(lines)


def sweep_runs(root: Path) -> list[RunDir]:
    """The run directories of a sweep dir; not a petsweep sweep dir is one clear error."""
    root = Path(root)
    runs = [RunDir(p.parent) for p in sorted(root.glob("*/status.json"))] if root.is_dir() else []
    if not root.is_dir() or not ((root / SWEEP_MARKER).exists() or runs):
        raise PetsweepError(f"{root} is not a petsweep sweep directory (no {SWEEP_MARKER}, no run dirs with "
                            f"status.json); give <runs_root>/<sweep_name>")
    return runs


def status_table(root: Path) -> str:
    rows, counts = [], {}
    for run in sweep_runs(root):
        state = run_status(run.path)
        counts[state] = counts.get(state, 0) + 1
        result = run.result() if state == DONE else None
        detail = f"{result['metric']} {result['score']:.4f}" if result else ""
        if (run.path / "error.txt").exists() and state != DONE:
            detail = f"{(run.status() or {}).get('error', '')[:100]}  traceback: {run.path / 'error.txt'}"
        rows.append(f"{state:<11} {run.path.name:<58} {detail}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return "\n".join(rows + [f"{sum(counts.values())} runs: {summary}"])


def cancel(root: Path) -> list[str]:
    """Stop the sweep's queued and running runs: scancel for SLURM jobs, SIGTERM for local processes.

    A stopped run records CANCELLED (a running one from its SIGTERM handler); a rerun resumes it.
    """
    from launchers import slurm
    from petsweep.status import CANCELLED

    stopped = []
    for run in sweep_runs(root):
        status, state = run.status() or {}, run_status(run.path)
        if state not in (RUNNING_S, QUEUED_S):
            continue
        if slurm.cancel(run.path):
            if state == QUEUED_S:
                run.set_status(CANCELLED, error="cancelled before it started")
        elif status.get("host") == socket.gethostname():
            os.kill(status["pid"], signal.SIGTERM)
        else:
            continue
        stopped.append(run.path.name)
    return stopped
