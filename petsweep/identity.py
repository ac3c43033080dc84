"""Run identity: a hash of what changes a run's numbers, and nothing else.

The rule (README, "Run identity"):
- in: every key of the resolved config that changes what is computed (backbone architecture and weights by
  name, method, task definition, trainer, seeds, the deepspeed and precision *settings*);
- out: where things live or run (paths, backbone.path and .package, task.hf_path, logger, launcher, hydra,
  sweep_name, thread count, number of ranks: the global batch is the same on any number), where modules sit
  in the architecture (backbone.modules: regexes behind the canonical names a method's targets use) and what
  a scheduler is asked for (backbone.resources);
- local data files count by their content (sha256), not their path: a moved file keeps its runs, an edited
  one makes new runs;
- a disabled group counts as absent (apet with scale null), and so does a key added later while it holds the
  default that reproduces earlier runs (ADDED_DEFAULTS);
- numbers are compared as numbers: 16 and 16.0 are the same value.
`auto` settings (precision, deepspeed) are hashed as `auto`; what they resolved to on the machine is recorded
in result.json (precision, deepspeed), and the analysis keeps those apart.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# Where a run is written or its inputs live, how it is mirrored, launched or scheduled, and how many
# threads it uses do not change its result; everything else does.
NON_SEMANTIC_KEYS = (
    "paths",
    "logger",
    "launcher",
    "hydra",
    "sweep_name",
    "optimized_metric",
    "trainer.num_threads",
    "trainer.ranks",
    "trainer.log_every",
    "backbone.path",
    "backbone.package",
    "backbone.resources",
    "backbone.modules",
    "task.hf_path",
)


# Keys added after runs were recorded, with the default that reproduces what those runs did: left out of the
# identity while they hold it, so adding an option never re-identifies (and retrains) finished runs.
ADDED_DEFAULTS = {
    "method.add_biases": False,
    "method.init_from": None,
    "method.init_text": None,  # prompt tuning from a text came later
    "trainer.eval_only": False,
    "trainer.frozen_dtype": "auto",  # frozen weights in bf16 on GPUs came later; on CPU auto is fp32
    "trainer.early_stopping_patience": None,
    "apet.delta_fraction": 0.5,  # tensor granularity came after element granularity
    "apet.include_delta_pool": True,
    "backbone.dropout": None,  # the model's own dropout; setting it (fused training needs 0) came later
    "method.round_epochs": None,  # OPF's epoch rule for where dynamic rounds begin came after equal shares
    "method.keep_optimizer_state": False,  # OPF's rounds reset every tensor's AdamW state before
    "method.gauge": "central",  # OPF's MPO gauge came after the mixed-canonical one
}


def plain(cfg: DictConfig | dict) -> dict:
    """The resolved config as plain dicts and lists (a plain dict is returned as it is).

    The hydra node is left out: it only resolves inside a running Hydra app and never changes a result.
    """
    if isinstance(cfg, dict):
        return cfg
    return {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in cfg
        if k != "hydra"
    }


def semantic_config(cfg: DictConfig | dict) -> dict:
    """The resolved config as a plain dict holding exactly what identifies the run (see the module's rule)."""
    data = _canonical(plain(cfg))  # a copy: the caller's config is never changed
    for dotted in NON_SEMANTIC_KEYS:
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    for dotted, default in ADDED_DEFAULTS.items():
        group, key = dotted.split(".")
        node = data.get(group)
        if (
            isinstance(node, dict)
            and key in node
            and node[key] == default
            and type(node[key]) is type(default)
        ):
            node.pop(key)
    if isinstance(data.get("apet"), dict) and data["apet"].get("scale") is None:
        data.pop("apet")  # APET off: its seed and other keys change nothing
    task = data.get("task")
    if isinstance(task, dict) and isinstance(task.get("files"), dict):
        task["files"] = {split: file_fingerprint(name) for split, name in task["files"].items()}
    return data


def _canonical(value):
    """A deep copy in which integral floats are ints (16.0 and 16 are one value; 1e-3 stays a float)."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def file_fingerprint(name) -> str | None:
    """`sha256:<hex>` of a data file's bytes; the name itself where no such file exists (the run says so)."""
    if not name:
        return name
    path = Path(str(name)).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return str(name)
    return _cached_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4096)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime key the cache
    return f"sha256:{sha256_file(path)}"


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
