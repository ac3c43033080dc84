"""Did a run's method parameters change anything? (issue #26: APET at its old default lr 1e-3 scored exactly
the same for every budget in 60 steps, the score being the trained head's alone.)

At the first step the method's trained parameters (every group but the task head) are kept as they start, in
`<run dir>/pet_initial.safetensors` (a resumed run reads them back; removed once the run has measured). At
the end, with the best dev checkpoint in place, the run predicts its dev examples (the train subset where
there is no dev split) twice: as trained, and with the method's parameters put back to where they started
(the trained head kept). result.json
`pet_movement` records the parameters' norm and how far they moved, and how many predictions they change;
`pet_moved` is false, and train.log warns, where they change none: the method added nothing the head did not.

Skipped (null) for runs the check cannot afford or reach: more than LIMIT method parameters (full fine-tuning
of a large model would be held twice), several ranks or DeepSpeed (a rank holds a shard), eval_only runs, a
resumed run whose start was not kept, and methods that train in stages (their later parameters do not exist
at the start).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from petsweep.model.params import HEAD_GROUP
from petsweep.train.checkpoint import save_file

log = logging.getLogger("petsweep")

LIMIT = 50_000_000  # method parameters above this are not copied for the check
FILE = "pet_initial.safetensors"


def initial(run_path: Path, groups, fresh: bool, enabled: bool) -> list | None:
    """(parameter, its value at the start on CPU in fp32) for each method parameter, or None (skipped).

    `fresh`: the run starts at step 0 (the values are kept in the run dir); else they are read back."""
    params = [p for g in groups if g.name != HEAD_GROUP for p in g.params]
    if not enabled or not params or sum(p.numel() for p in params) > LIMIT:
        return None
    path = Path(run_path) / FILE
    if fresh:
        state = {
            str(i): p.detach().to("cpu", torch.float32, copy=True).contiguous() for i, p in enumerate(params)
        }
        tmp = path.with_name(path.name + ".tmp")
        save_file(state, str(tmp))
        os.replace(tmp, path)
    else:
        try:
            state = load_file(str(path))
        except (OSError, RuntimeError):
            return None  # started before the check existed, or its file is gone
    if len(state) != len(params) or any(state[str(i)].shape != p.shape for i, p in enumerate(params)):
        return None
    return [(p, state[str(i)]) for i, p in enumerate(params)]


def forget(run_path: Path) -> None:
    """Drop the kept start once the run has measured it (only a resume reads it)."""
    (Path(run_path) / FILE).unlink(missing_ok=True)


def measure(pairs: list | None, predict) -> dict | None:
    """How far the method's parameters moved and how many predictions of `predict()` they change; warns in the
    run's log where they change none. `pairs`: initial()'s answer; `predict`: the model's predictions as it
    is (called as trained, then with the method's parameters at their start, which are then put back)."""
    if pairs is None:
        return None
    with torch.no_grad():
        start = math.sqrt(sum(float(v.double().pow(2).sum()) for _, v in pairs))
        moved = math.sqrt(sum(float((p.detach().cpu().double() - v.double()).pow(2).sum()) for p, v in pairs))
        trained = list(predict())
        kept = [p.detach().clone() for p, _ in pairs]
        try:
            for p, v in pairs:
                p.copy_(v.to(p.device, p.dtype))
            reset = list(predict())
        finally:
            for (p, _), value in zip(pairs, kept):
                p.copy_(value)
    changed = sum(a != b for a, b in zip(trained, reset))
    record = {
        "params": sum(v.numel() for _, v in pairs),
        "initial_norm": start,
        "change_norm": moved,
        "relative_change": moved / start if start else None,
        "predictions_changed": changed,
        "examples": len(trained),
        "moved": changed > 0,
    }
    if not changed:
        log.warning(
            "the method's %d trained parameters change none of %d dev predictions (they moved %.3g in norm, "
            "from %.3g): the score is the head's alone; a larger method.lr or more steps may train them "
            "(docs/lr_sweep.md)",
            record["params"],
            record["examples"],
            moved,
            start,
        )
    return record
