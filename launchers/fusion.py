"""Which runs of a sweep train fused (petsweep/train/fused.py), in which groups, and why the others train
alone (what may fuse at all: petsweep/run/fusable.py).

Fusion pays only while the device is not already busy with one run's step: the cost model adds runs to a
group while the group's tokens per step (batch x max_length of each member) stay within `fuse_tokens`.
Measured on this 2-core CPU (BENCHMARKS.md): 8 MiniLM LoRA runs at 4 x 32 tokens per run-step (1,024 tokens
fused) take 0.91 of their time one after another, in 1/8 of the memory; at 16 x 64 (1,024 each) fusing is
1.2x slower. So the default budget on CPU is 1,024 tokens a step; on GPU, 16,384 per GPU (unmeasured here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from launchers.planning import PlannedRun
from petsweep.run.fusable import group_key, why_alone
from petsweep.spec.errors import PetsweepError

CPU_FUSE_TOKENS, GPU_FUSE_TOKENS = 1024, 16384


def check_fuse(fuse, warm_workers: bool = True) -> None:
    """`hydra.launcher.fuse` is a group size >= 1 (1: never fuse), and fused groups run in warm workers."""
    if isinstance(fuse, bool) or not isinstance(fuse, int) or fuse < 1:
        raise PetsweepError(
            f"hydra.launcher.fuse: {fuse!r} is not a group size; expected an integer >= 1 "
            "(1: every run alone)"
        )
    if fuse > 1 and not warm_workers:
        raise PetsweepError(
            f"hydra.launcher.fuse: {fuse} needs hydra.launcher.warm_workers=true (a fused group trains in "
            "one worker); set fuse=1 to run a process per run"
        )


def step_tokens(cfg: dict) -> int:
    """The most tokens one step of the run puts through the backbone (its batch at full length)."""
    return int(cfg["trainer"]["batch_size"]) * int(cfg["task"]["max_length"])


def token_budget(fuse_tokens: int | None, gpus: int) -> int:
    return fuse_tokens or (GPU_FUSE_TOKENS * gpus if gpus else CPU_FUSE_TOKENS)


@dataclass
class Unit:
    """What the launcher hands a slot: one run, or a group of runs that train fused; `why` says why a run
    trains alone (None for a fused group)."""

    runs: list[PlannedRun]
    why: str | None = None


def units(runs: list[PlannedRun], fuse: int, budget: int) -> list[Unit]:
    """The runs as units, in plan order of each unit's first run: groups of up to `fuse` runs whose tokens
    per step fit `budget`, and the rest alone, each with its reason."""
    out: list[Unit] = []
    open_groups: dict[str, Unit] = {}
    for run in runs:
        why = why_alone(run.cfg, fuse)
        tokens = step_tokens(run.cfg)
        if why is None and 2 * tokens > budget:
            why = f"one step is {tokens} tokens: two would pass the fusion budget of {budget} (fuse_tokens)"
        if why is not None:
            out.append(Unit([run], why))
            continue
        key = group_key(run.cfg)
        group = open_groups.get(key)
        if group is None or len(group.runs) >= fuse or _tokens(group) + tokens > budget:
            group = open_groups[key] = Unit([])
            out.append(group)
        group.runs.append(run)
    for unit in out:
        if unit.why is None and len(unit.runs) == 1:
            unit.why = (
                "no other run to fuse with (equal in backbone, task, precision and every key not routed "
                "per member)"
            )
    return out


def _tokens(unit: Unit) -> int:
    return sum(step_tokens(run.cfg) for run in unit.runs)


def plan_notes(
    runs: list[PlannedRun], fuse: int, fuse_tokens: int | None, gpu_count: Callable[[], int]
) -> dict:
    """How each run of the plan will train, by run dir: `fused: group 2 (3 runs, 384 tokens a step)` or
    `alone: <why>`. Finished runs are not launched, so they are in no group; `gpu_count` (what asks CUDA,
    which imports torch) is called only where a run is left to group: the plan of a finished sweep reads
    records only (#23)."""
    from petsweep.records.status import State

    todo = [run for run in runs if run.status != State.COMPLETED]
    notes = {run.path: "done" for run in runs}
    if not todo:
        return notes
    number = 0
    for unit in units(todo, fuse, token_budget(fuse_tokens, gpu_count())):
        if len(unit.runs) == 1:
            notes[unit.runs[0].path] = f"alone: {unit.why}"
            continue
        number += 1
        for run in unit.runs:
            notes[run.path] = f"fused: group {number} ({len(unit.runs)} runs, {_tokens(unit)} tokens a step)"
    return notes
