"""What may train fused (petsweep/fused.py): the rule the planner applies (launchers/fusion.py) and a fused
group checks again before it claims anything.

A run fuses when fused training provably ends where it would alone: an encoder with a classification head;
LoRA without dropout, BitFit (on the biases the backbone has) or LN tuning; a backbone without dropout
(`backbone.dropout=0`: dropout masks drawn for a batch of several runs' rows are not the masks each run
draws alone); one rank, no DeepSpeed, no gradient accumulation. Runs fuse with runs of the same backbone,
task (data and lengths) and precision.
"""

from __future__ import annotations

import json

from petsweep.identity import semantic_config

# LoRA: the shared projection once, each run's update on its rows; BitFit and LN tuning: each run's own copy
# of the modules whose biases or norms it trains, on its rows (petsweep/fused.py)
FUSED_METHODS = ("lora", "bitfit", "ln")


def why_alone(cfg: dict, fuse: int = 2) -> str | None:
    """Why this run cannot train fused (one line), or None."""
    backbone, method, trainer = cfg["backbone"], cfg["method"], cfg["trainer"]
    if fuse < 2:
        return "fuse=1"
    if backbone["family"] != "encoder":
        return f"{backbone['family']} backbones train alone (fused training covers encoders with a head)"
    if method["name"] not in FUSED_METHODS or method.get("add_biases"):
        return f"method={method['name']} trains alone (fused training covers {', '.join(FUSED_METHODS)})"
    if method.get("dropout"):
        return "LoRA dropout draws masks a fused batch would draw differently: method.dropout=0 fuses"
    if backbone.get("dropout") != 0:
        return "the backbone's dropout masks depend on the whole batch: backbone.dropout=0 fuses"
    if (trainer.get("ranks") or 1) != 1 or cfg["deepspeed"]["preset"] not in ("none", "auto"):
        return "several ranks or DeepSpeed"
    if trainer["grad_accum"] != 1:
        return "gradient accumulation"
    if trainer.get("eval_only") or method.get("init_from"):
        return "eval_only or init_from"
    return None


def group_key(cfg: dict) -> str:
    """Runs fuse with runs of the same backbone, task (data, lengths) and precision."""
    semantic = semantic_config(cfg)
    trainer = cfg["trainer"]
    shared = [semantic["backbone"], semantic["task"], trainer["precision"], trainer["device"]]
    return json.dumps(shared, sort_keys=True, default=str)
