"""A sweep with memory: expand, plan from disk, launch only what is not done, report every failure.

Re-running the same sweep is a resume: COMPLETED runs are skipped, identical configs are launched once,
FAILED, CANCELLED and interrupted runs run again and continue from their checkpoints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from launchers import plan_memo
from launchers.expand import expand
from launchers.planning import CachedComposer, PlannedRun, cached_queue, plan, run_status
from petsweep.records.labels import display
from petsweep.records.status import State, write_json

SWEEP_MARKER = "sweep.json"


def sweep_dir_of(runs: list[PlannedRun]) -> Path:
    """Where a launch of `runs` keeps its own files (sweep.json, the launcher's logs, the cancel marker it
    reads): the runs' sweep dir (spec.identity.sweep_dir: their dirs' parent), or the runs root where the
    launch spans several sweeps."""
    parents = {r.path.parts[:-1] for r in runs}  # a Path's parent, or its text, is ~10 us (#25: 10^6 runs)
    return Path(*parents.pop()) if len(parents) == 1 else Path(runs[0].cfg["paths"]["runs_root"])


def record_sweep(runs: list[PlannedRun], arguments: list[str], shown: list[list[str]] | None = None) -> Path:
    """Write <sweep dir>/sweep.json: what `petsweep status` and `cancel` recognise a sweep by; `shown`: the
    runs' differing(runs), where the caller has it."""
    root = sweep_dir_of(runs)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / SWEEP_MARKER
    previous = json.loads(marker.read_text()) if marker.exists() else {"runs": []}
    names = sorted(set(previous["runs"]) | {r.path.name for r in runs})
    # what tells each run apart (petsweep.records.labels): sweep lines, status and W&B names read it from here
    shown = differing(runs) if shown is None else shown
    labels = {**(previous.get("labels") or {}), **dict(zip((r.path.name for r in runs), shown))}
    record = {"name": root.name, "arguments": arguments, "runs": names, "labels": labels}
    if all(previous.get(key) == value for key, value in record.items()):
        # a resume that adds nothing leaves it as it is: a rewrite renames a file into the sweep dir, which
        # moves the dir's mtime, and the next `petsweep status` would list the whole dir again (#25)
        return root
    write_json(marker, {"name": root.name, "updated": time.time(), **record})
    return root


def differing(runs: list[PlannedRun]) -> list[list[str]]:
    """Each planned run's overrides that differ between the runs (petsweep.records.labels.differing); the
    method=apet an APET budget implies (launchers.expand.apet_method) is left out where every run has it."""
    from petsweep.records.labels import differing as labels

    return labels([r.overrides for r in runs])


def unfinished(runs: list[PlannedRun]) -> list[PlannedRun]:
    """Runs without a result that nobody is working on: new, failed, cancelled or interrupted.

    Before launching these are the runs to launch; after, the ones to report.
    """
    return [r for r in runs if r.status not in (State.COMPLETED, State.QUEUED, State.RUNNING)]


def describe(runs: list[PlannedRun]) -> str:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    dupes = sum(r.duplicates for r in runs)
    parts = ", ".join(f"{n} {s.word}" for s, n in sorted(counts.items()))
    return f"{len(runs)} runs ({parts})" + (f"; {dupes} duplicate configs merged" if dupes else "")


def run_sweep(
    arguments: list[str],
    zips: list[list[str]] | None,
    compose_fn: Callable[[list[str]], DictConfig],
    launch_fn: Callable[[list[PlannedRun]], list[int]],
    log=print,
    loader=None,
    composed: tuple[list[str], DictConfig] | None = None,
) -> list[PlannedRun]:
    """Plan, launch what is pending, and return the runs with their status after launching. `loader`: what
    lists a group's options for glob() axes (launchers.expand.parse); `composed`: overrides and the config
    Hydra composed of them, which the plan takes instead of composing it again (launchers.planning.plan)."""
    run_overrides = expand(arguments, zips, loader)
    composer = CachedComposer(compose_fn)
    if composed is not None:
        composer.keep(*composed)
    memo_key = plan_memo.key(run_overrides, composer) if plan_memo.enabled() else None
    remembered = plan_memo.finished(memo_key, run_overrides, composer)  # a finished sweep: nothing planned
    if remembered is not None:
        runs, labels = remembered
    else:
        runs = plan(run_overrides, compose_fn, finished="left_as_is", composer=composer)
        labels = differing(runs)
        plan_memo.save(memo_key, runs, labels, run_overrides)
    root = record_sweep(runs, arguments, labels)
    todo = unfinished(runs)
    log(f"petsweep sweep {root}: {describe(runs)}; launching {len(todo)}")
    if todo:
        launch_fn(todo)
    queue = cached_queue()
    for r in runs:
        if r.status != State.COMPLETED:  # a finished run stays finished: only the others are read again (#25)
            r.status = run_status(r.path, queue)
    log(f"petsweep sweep {root}: {describe(runs)}")
    if any(r.status in (State.QUEUED, State.RUNNING) for r in runs):
        log(f"  runs are queued or running: follow them with `petsweep status {root}`")
    left = unfinished(runs)
    shown = dict(zip((r.path for r in runs), labels)) if left else {}
    for r in left:
        error = r.path / "error.txt"
        name = display(r.path.name, shown[r.path])
        log(f"  {r.status:<11} {name}  " + (f"traceback: {error}" if error.exists() else ""))
    return runs
