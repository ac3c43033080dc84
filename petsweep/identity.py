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


def plain(cfg: DictConfig | dict) -> dict:
    """The resolved config as plain dicts and lists (a plain dict is returned as it is).

    The hydra node is left out: it only resolves inside a running Hydra app and never changes a result.
    """
    if isinstance(cfg, dict):
        return cfg
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in cfg if k != "hydra"}


def semantic_config(cfg: DictConfig | dict) -> dict:
    """The resolved config as a plain dict, without NON_SEMANTIC_KEYS."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in plain(cfg).items()}  # copies what is popped
    for dotted in NON_SEMANTIC_KEYS:
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data


def run_hash(cfg: DictConfig | dict) -> str:
    """sha256 of the canonical JSON of the semantic config: equal configs, equal ids, on any machine."""
    canonical = json.dumps(semantic_config(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _slug_part(value) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value))


def run_slug(cfg: DictConfig | dict) -> str:
    """<backbone>-<method>-<task>-s<seed>: readable, not unique (the hash makes it unique)."""
    c = plain(cfg)
    names = (c["backbone"]["name"], c["method"]["name"], c["task"]["name"])
    return "-".join(_slug_part(v) for v in names) + f"-s{c['seed']}"


def run_dir(cfg: DictConfig | dict) -> Path:
    """<runs_root>/<sweep_name>/<slug>-<hash12>."""
    c = plain(cfg)
    return Path(c["paths"]["runs_root"]) / _slug_part(c["sweep_name"]) / f"{run_slug(c)}-{run_hash(c)[:12]}"
