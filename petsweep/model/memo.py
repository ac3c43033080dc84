"""The one key of the meta-device memos: everything a count on the meta device reads of a run.

Counting a method on the meta device (model.params.check_on_meta) and what the budget solver derives from such
counts (model.budget: a solved budget, the count at knob values, a width knob's matrix widths) are pure
functions of the run's backbone, its method's config (but the keys only its optimizer reads), the `apet`
group resolved and the task's shape. Each is memoised with functools.lru_cache on a MetaKey (so a plan of
many runs builds each distinct model once, #25): the only state they keep between calls (#23), and it
changes how long a count takes, never its answer, since a key holds all the answer reads and the memos hand
out copies. Importing this module imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

# a method's keys that reach only its optimizer groups (PETMethod.group, head_lr): no count depends on them,
# so a sweep of learning rates counts each model once
OPTIMIZER_ONLY = ("lr", "adam_eps")
# the task's fields a meta-device count reads: the head's classes, the input length (prompt positions,
# DePT's s), the kind. A method that reads another field of AttachContext.task puts it here
# (tests/test_meta_memo.py reads the methods' code for such reads)
TASK_SHAPE = ("num_labels", "max_length", "kind")


@dataclass(frozen=True)
class MetaKey:
    """A run as the meta-device memos key it.

    Attributes:
        text: everything a meta-device answer reads of the run, as canonical JSON; equal texts, equal answers.
        spec: the run (its recorded config left out), not compared: what the memoised function reads on a
            miss. Any run with the same text gives the same answer.
    """

    text: str
    spec: object = field(compare=False, repr=False)


def meta_key(spec) -> MetaKey:
    """The MetaKey of a validated run (petsweep.spec.config.RunSpec)."""
    method = {k: v for k, v in vars(spec.method.config).items() if k not in OPTIMIZER_ONLY}
    task = {name: getattr(spec.task, name) for name in TASK_SHAPE}
    text = json.dumps(
        [vars(spec.backbone), method, repr(spec.apet), task],  # apet: the budget and where it may fall
        sort_keys=True,
        default=str,
    )
    return MetaKey(text, dataclasses.replace(spec, config={}))
