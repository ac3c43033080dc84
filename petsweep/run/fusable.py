"""What may train fused (petsweep/train/fused.py): the rule the planner applies (launchers/fusion.py) and a
fused group checks again before it claims anything.

A run fuses when fused training provably ends where it would alone: an encoder with a classification head;
a method that says it fuses (PETMethod.fuses and trains_alone: LoRA without dropout, BitFit on the biases the
backbone has, LN tuning); a backbone without dropout
(`backbone.dropout=0`: dropout masks drawn for a batch of several runs' rows are not the masks each run
draws alone); one rank, no DeepSpeed, no gradient accumulation. Runs of any of these methods fuse with each
other when their identities are equal but for the keys each member carries itself (ROUTED_KEYS): same backbone
(and frozen dtype), task (data and lengths), precision and device.
"""

from __future__ import annotations

import json

from petsweep.model.resolve import semantic_config
from petsweep.spec.config import RunSpec
from petsweep.spec.shape import run_shape


def fused_methods() -> list[str]:
    """The methods that train fused: their class says so (PETMethod.fuses; petsweep/train/fused.py carries
    them)."""
    from petsweep.methods import METHODS  # the methods' modules import torch: only where a run may fuse

    return [name for name in METHODS.names() if METHODS.get(name).fuses]


def why_alone(cfg: dict, fuse: int = 2) -> str | None:
    """Why this run cannot train fused (one line), or None."""
    backbone, method, trainer = cfg["backbone"], cfg["method"], cfg["trainer"]
    if fuse < 2:
        return "fuse=1"
    if backbone["family"] != "encoder":
        return f"{backbone['family']} backbones train alone (fused training covers encoders with a head)"
    fused = fused_methods()
    if method["name"] not in fused:
        return f"method={method['name']} trains alone (fused training covers {', '.join(fused)})"
    from petsweep.methods import METHODS

    alone = METHODS.get(method["name"]).trains_alone(method)
    if alone:
        return alone
    if backbone.get("dropout") != 0:
        return "the backbone's dropout masks depend on the whole batch: backbone.dropout=0 fuses"
    if run_shape(cfg).world_size != 1 or cfg["deepspeed"]["preset"] not in ("none", "auto"):
        return "several ranks or DeepSpeed"
    if trainer["grad_accum"] != 1:
        return "gradient accumulation"
    if trainer.get("eval_only") or method.get("init_from"):
        return "eval_only or init_from"
    return None


# What may differ between the members of a group, because each member's own modules, optimizer and Training
# carry it (petsweep/train/fused.py routes them per member): the seed, what the method trains and how, and the
# member's own schedule of steps, evaluations and checkpoints. Every other key of the run's identity (the
# backbone and how its frozen weights are held, the task and its lengths, precision, device, DeepSpeed, and
# any key added later until it is routed and listed here) must be equal: it keeps runs apart.
ROUTED_KEYS = (
    "seed",
    "method.name",
    "method.lr",
    "method.train_head",
    "method.r",  # LoRA's own layers
    "method.alpha",
    "method.targets",
    "method.dropout",  # why_alone: 0 in every member that fuses
    "method.add_biases",  # why_alone: false in every member that fuses
    "method.init_from",  # why_alone: none in every member that fuses
    "trainer.max_steps",
    "trainer.batch_size",
    "trainer.grad_accum",  # why_alone: 1 in every member that fuses
    "trainer.head_lr",
    "trainer.weight_decay",
    "trainer.warmup_ratio",
    "trainer.schedule",
    "trainer.max_grad_norm",
    "trainer.eval_every",
    "trainer.eval_batch_size",
    "trainer.save_every",
    "trainer.early_stopping_patience",
    "trainer.eval_only",  # why_alone: false in every member that fuses
)


def shared_config(cfg: dict, spec: RunSpec | None = None) -> dict:
    """The run's identity less the keys routed per member: what every member of its group must share.
    `spec`: the config's validated spec, where the caller holds it (what `budget` chose is read from it)."""
    semantic = semantic_config(cfg, spec)
    for dotted in ROUTED_KEYS:
        *parents, leaf = dotted.split(".")
        node = semantic
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return semantic


def group_key(cfg: dict, spec: RunSpec | None = None) -> str:
    """Runs fuse with runs whose identities are equal but for ROUTED_KEYS; `spec` as shared_config."""
    return json.dumps(shared_config(cfg, spec), sort_keys=True, default=str)


def differing_keys(cfgs: list[dict]) -> list[str]:
    """The dotted keys (leaves) in which the shared configs of `cfgs` differ."""
    flat = [_flatten(shared_config(cfg)) for cfg in cfgs]
    keys = sorted(set().union(*flat))
    return [k for k in keys if len({json.dumps(f.get(k, "<unset>"), default=str) for f in flat}) > 1]


def _flatten(node: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
