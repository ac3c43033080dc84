"""Run identity: a hash of the resolved config without the keys that do not change what is computed."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# Where a run is written, how it is mirrored or launched, and how many threads it uses do not change its
# result; everything else does.
NON_SEMANTIC_KEYS = ("paths", "logger", "launcher", "hydra", "sweep_name", "trainer.num_threads")


def semantic_config(cfg: DictConfig) -> dict:
    """The resolved config as a plain dict, without NON_SEMANTIC_KEYS."""
    # the hydra node only resolves inside a running Hydra app, and is never part of the identity
    data = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in cfg if k != "hydra"}
    for dotted in NON_SEMANTIC_KEYS:
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data


def run_hash(cfg: DictConfig) -> str:
    """sha256 of the canonical JSON of the semantic config: equal configs, equal ids, on any machine."""
    canonical = json.dumps(semantic_config(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _slug_part(value) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value))


def run_slug(cfg: DictConfig) -> str:
    """<backbone>-<method>-<task>-s<seed>: readable, not unique (the hash makes it unique)."""
    return "-".join(_slug_part(v) for v in (cfg.backbone.name, cfg.method.name, cfg.task.name)) + f"-s{cfg.seed}"


def run_dir(cfg: DictConfig) -> Path:
    """<runs_root>/<sweep_name>/<slug>-<hash12>."""
    return Path(cfg.paths.runs_root) / _slug_part(cfg.sweep_name) / f"{run_slug(cfg)}-{run_hash(cfg)[:12]}"
