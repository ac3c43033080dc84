"""Run identity: a hash of what changes a run's numbers, and nothing else.

The rule (docs/records.md, "Run identity"):
- in: every key of the resolved config that changes what is computed (backbone architecture and weights by
  name, method, task definition, trainer, seeds, the deepspeed and precision *settings*);
- out: where things live or run (paths, backbone.path and .package, task.hf_path, logger, launcher, hydra,
  sweep_name, thread count, what a finished run keeps on disk) and what a scheduler is asked for
  (backbone.resources);
- the number of ranks only where dropout makes it change the numbers, backbone.modules only by the entries
  that differ from the architecture's own map, trainer.frozen_dtype=auto as what it resolves to
  (_resolve_semantic_settings);
- local data files count by their content (sha256), not their path: a moved file keeps its runs, an edited
  one makes new runs;
- a disabled group counts as absent (apet with scale null), and so does a key added later while it holds the
  default that reproduces earlier runs (ADDED_DEFAULTS);
- numbers are compared as numbers: 16 and 16.0 are the same value.
`auto` settings (precision, deepspeed) are hashed as `auto`; what they resolved to on the machine is recorded
in result.json (precision, deepspeed, backbone_dtype, ranks), and the analysis keeps those apart.

These functions take the config as plain data (typecheck.plain; a DictConfig given is converted the same way).
The id of a config is petsweep.model.resolve's (run_hash, semantic_config, run_dir): a config that names a
`budget` is identified by what the budget chose, which it solves, and the rule reads one fact of the
config's method (whether it is the task head itself: PETMethod.is_the_head), which this floor cannot import;
it hands both to semantic_form (this module hashes, it counts nothing and names no method).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from petsweep.spec.shape import run_shape
from petsweep.spec.typecheck import plain

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
    "trainer.log_every",
    "trainer.keep",  # what a finished run keeps on disk (petsweep/records/retention.py)
    "backbone.path",
    "backbone.package",
    "backbone.resources",
    "task.hf_path",
)


# Keys added after runs were recorded, with the default that reproduces what those runs did: left out of the
# identity while they hold it, so adding an option never re-identifies (and retrains) finished runs.
ADDED_DEFAULTS = {
    "method.add_biases": False,
    "method.init_from": None,
    "method.init_text": None,  # prompt tuning from a text came later
    "trainer.eval_only": False,
    "trainer.frozen_dtype": "fp32",  # frozen weights in bf16 came later: earlier runs held them in fp32
    "trainer.early_stopping_patience": None,
    "apet.delta_fraction": 0.5,  # tensor granularity came after element granularity
    "apet.include_delta_pool": True,
    "apet.pool": "petsweep",  # the seed's tensor pool (T5 zero biases, cross-attention LoRA) came later
    "apet.split": "round",  # PET_Scaling's floor(K/2) per pool came after round(K/2) + the rest
    "apet.seed_by_budget": False,  # positions seeded by K x seed (independent budgets) came later
    "apet.ratio_counts_zero_biases": False,  # tensor scale=ratio sized K without the zero biases before
    "apet.zero_biases": "every",  # the seed's T5 zero biases on every bias-free backbone (not T5 only) before
    "backbone.dropout": None,  # the model's own dropout; setting it (fused training needs 0) came later
    "method.round_epochs": None,  # OPF's epoch rule for where dynamic rounds begin came after equal shares
    "method.keep_optimizer_state": False,  # OPF's rounds reset every tensor's AdamW state before
    "method.gauge": "central",  # OPF's MPO gauge came after the mixed-canonical one
    "method.delta_fp32": False,  # APET's W0 + delta was formed in the frozen dtype (bf16) before
    "task.dedupe_inputs": False,  # bbc_headlines kept train rows under a test headline before
    "method.adam_eps": 1e-8,  # torch's AdamW eps; a method's own (DePT's seed: 1e-6) came later
    "method.init_special_tokens": False,  # DePT's text init without the special tokens (before the seed's)
    "budget": None,  # a matched budget for every method (petsweep/model/budget.py) came later
    "budget_rule": "below",  # budget= sized LoRA/adapter from below, selective_module as a bound, before
    "method.plus_one": 0,  # one unit more rank / bottleneck on some modules came with budget=
    "task.decoding": "model_default",  # generation through the model's generate() came before plain greedy
    "method.placement": "decoder",  # prefix's paper placement (encoder + cross-attention too) came later
}


def semantic_form(data: dict, method_is_the_head: Callable[[str | None], bool]) -> dict:
    """What identifies the run, from `data`: a canonical copy of the plain config (canonical()), changed in
    place, whose `budget` is absent or in its identifying form (petsweep.model.resolve.budget_form: APET's
    folded into apet.scale, a knob's chosen values and the budget_rule that identifies them in place).
    `method_is_the_head(name)`: whether method `name` is the task head itself (PETMethod.is_the_head), asked
    only where the answer changes the id (trainer.head_lr: _resolve_semantic_settings)."""
    if data.get("budget") is None:
        data.pop("budget_rule", None)  # counts only beside a budget (budget_form says which rule)
    _resolve_semantic_settings(data, method_is_the_head)
    for dotted in NON_SEMANTIC_KEYS:
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    for dotted, default in ADDED_DEFAULTS.items():
        group, _, key = dotted.rpartition(".")
        node = data.get(group) if group else data
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


def _resolve_semantic_settings(data: dict, method_is_the_head: Callable[[str | None], bool]) -> None:
    """Settings whose numbers depend on the rest of the config, put in the form that identifies them.

    - trainer.frozen_dtype=auto is what it resolves to (bf16 under precision=bf16, else fp32; train.py): runs
      recorded before the key existed held fp32 frozen weights, and fp32 is the ADDED_DEFAULT;
    - trainer.ranks counts when the run draws random numbers in its forward pass (dropout): each rank draws
      its own masks, so a 2-rank run differs from a 1-rank one; with no dropout the global batch gives the
      same numbers on any number of ranks. One rank is left out, so 1-rank runs keep their ids; the number
      counted is the run's world size (spec/shape.py: null is one rank per GPU of every node, what SLURM
      starts; a local run that would start another number, on fewer visible GPUs, is refused, app.py);
    - backbone.modules counts by the entries that differ from the architecture's own map (a YAML or `+backbone
      .modules.q=...` that moves what a target matches changes what trains); the default map adds nothing;
    - method.delta_fp32 (APET) counts only over bf16 frozen weights: over fp32 ones both values compute alike;
    - task.dedupe_inputs counts only where task.dedupe_fields differ from task.fields (bbc_headlines): where
      rows are deduplicated on what the model reads (every other task, bbc_news too) it removes nothing;
    - task.decoding counts only for generation tasks (classification ranks label words, never decodes);
    - trainer.head_lr counts where a head petsweep adds trains at it (an encoder, train_head, a method that is
      not the head itself: method_is_the_head) and it differs from the method's lr; else it is null, what
      every run before #26 recorded and what computes the same (so LoRA's runs, at head_lr = lr = 2e-3, keep
      their ids).
    """
    task = data.get("task")
    if isinstance(task, dict) and task.get("dedupe_fields") in (None, task.get("fields")):
        task.pop("dedupe_inputs", None)
    if isinstance(task, dict) and task.get("kind", "classification") != "generation":
        task.pop("decoding", None)  # only generation tasks decode
    trainer = data.get("trainer")
    backbone = data.get("backbone") if isinstance(data.get("backbone"), dict) else {}
    if isinstance(trainer, dict):
        if trainer.get("frozen_dtype") == "auto":
            trainer["frozen_dtype"] = "bf16" if trainer.get("precision") == "bf16" else "fp32"
        method = data.get("method")
        apet = data.get("apet")
        if isinstance(apet, dict) and apet.get("granularity", "element") != "tensor":
            apet.pop("pool", None)  # read at tensor granularity only
            apet.pop("split", None)
            apet.pop("delta_fraction", None)
            apet.pop("include_delta_pool", None)
        if isinstance(apet, dict) and apet.get("include_delta_pool") is False:
            apet.pop("delta_fraction", None)  # no delta pool: its share is moot
        if isinstance(apet, dict) and not (
            apet.get("granularity", "element") == "tensor"
            and apet.get("scale") == "ratio"
            and apet.get("pool") == "seed"
            and (backbone.get("model_type") == "t5" or apet.get("zero_biases", "t5") == "every")
        ):
            apet.pop("ratio_counts_zero_biases", None)  # no zero biases are added, or K is no ratio
        if isinstance(apet, dict) and (
            apet.get("granularity", "element") != "tensor"
            or apet.get("pool") != "seed"
            or backbone.get("model_type") == "t5"
        ):
            apet.pop("zero_biases", None)  # changes nothing there (T5 gets its zero biases either way)
        if (
            isinstance(method, dict)
            and trainer.get("head_lr") is not None
            and (
                backbone.get("family") != "encoder"
                or not method.get("train_head", True)
                or trainer["head_lr"] == method.get("lr")
                or method_is_the_head(method.get("name"))  # last: a lookup among the methods
            )
        ):
            trainer["head_lr"] = None  # no head trains at it, or it is the method's lr: as null did
        frozen = trainer.get("frozen_dtype", "fp32")
        if isinstance(method, dict) and "delta_fp32" in method and frozen == "fp32":
            method["delta_fp32"] = False  # APET's sum is fp32 either way over fp32 frozen weights
        counted = ranks_counted(data)
        trainer.pop("ranks", None)
        if counted is not None and counted != 1:
            trainer["ranks"] = counted
    if "modules" in backbone:
        from petsweep.spec.architectures import ARCHITECTURES

        base = ARCHITECTURES.get(backbone.get("model_type"))
        own = base.modules if base is not None else {}
        moved = {k: v for k, v in (backbone.pop("modules") or {}).items() if own.get(k) != v}
        if moved:
            backbone["modules"] = moved


def ranks_counted(cfg: dict) -> int | None:
    """The number of ranks a run's identity counts: its world size (spec/shape.py; trainer.ranks=null is the
    backbone's GPUs on all its nodes, at least one rank a node); None where the number does not change the
    numbers (no dropout). Before the rule counted the world, null counted one node's GPUs: a config with
    backbone.resources.nodes > 1 (none shipped) and dropout got a new id."""
    data = plain(cfg)
    if not _stochastic(data):
        return None
    return run_shape(data).world_size


def _stochastic(data: dict) -> bool:
    """Whether training draws random numbers in the forward pass: the backbone's dropout (null: the model's
    own, which is never assumed to be 0) or a method's nonzero dropout key."""
    backbone = data.get("backbone") or {}
    method = data.get("method") or {}
    if backbone.get("dropout") != 0:
        return True
    return any("dropout" in k and v not in (0, None) for k, v in method.items() if isinstance(k, str))


_NESTED = (dict, list, tuple, float)  # what canonical changes or copies; anything else is kept as it is


def canonical(value):
    """A deep copy in which integral floats are ints (16.0 and 16 are one value; 1e-3 stays a float).

    Leaves that need nothing (str, int, bool, None) are kept without a call: a plan hashes every run (#25)."""
    if isinstance(value, dict):
        return {k: canonical(v) if isinstance(v, _NESTED) else v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) if isinstance(v, _NESTED) else v for v in value]
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


def semantic_hash(semantic: dict) -> str:
    """The id of a semantic config (petsweep.model.resolve.semantic_config's): sha256 of its canonical JSON,
    equal configs, equal ids, on any machine."""
    canonical_json = json.dumps(semantic, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical_json.encode()).hexdigest()


def seeded_run_hash(cfg: dict, semantic: Callable[[dict], dict]):
    """run_hash of `cfg` with its top-level seed set to another integer, as a function of that seed: the
    semantic config is built and serialised once, and each seed adds its digits and a sha256 (a plan of 10^6
    runs over a few configs and many seeds, #25). semantic_config copies the top-level seed and reads it
    nowhere else, so run_hash({**cfg, "seed": s}) == seeded_run_hash(cfg)(s) for every integer s (checked
    for cfg's own seed here; tests/test_identity.py checks others). `semantic`: the function that makes the
    semantic config (petsweep.model.resolve.semantic_config)."""
    data = semantic(cfg)
    data.pop("seed", None)
    dumps = functools.partial(json.dumps, sort_keys=True, separators=(",", ":"), default=str)
    head = dumps({k: v for k, v in data.items() if k < "seed"})[:-1]  # `{...` without its closing brace
    tail = dumps({k: v for k, v in data.items() if k > "seed"})[1:]  # `...}` without its opening brace
    prefix = hashlib.sha256(f'{head}{"," if len(head) > 1 else ""}"seed":'.encode())
    suffix = f"{',' if len(tail) > 1 else ''}{tail}".encode()

    def digest(seed: int) -> str:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed {seed!r}: seeded_run_hash takes integer seeds")
        h = prefix.copy()
        h.update(f"{int(seed)}".encode() + suffix)
        return h.hexdigest()

    if type(cfg.get("seed")) is int and digest(cfg["seed"]) != semantic_hash(semantic(cfg)):
        raise AssertionError("seeded_run_hash disagrees with run_hash")  # a change to semantic_config
    return digest


def _slug_part(value) -> str:
    return _safe_name(str(value))  # keyed by its text: 1, True and 1.0 are three names; a list has one


@functools.lru_cache(maxsize=1024)  # a few names over a sweep's runs, made safe once each (#25)
def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def run_slug(cfg: dict) -> str:
    """<backbone>-<method>-<task>-s<seed>: readable, not unique (the hash makes it unique)."""
    c = plain(cfg)
    names = (c["backbone"]["name"], c["method"]["name"], c["task"]["name"])
    return "-".join(_slug_part(v) for v in names) + f"-s{c['seed']}"


def sweep_dir(cfg: dict) -> Path:
    """<runs_root>/<sweep_name, made a safe single name>: where a sweep lives, its runs and its own files
    (sweep.json, .index, the launcher's logs): the one rule, which Hydra's raw hydra.sweep.dir is not
    (`sweep_name=a/../../b` would reach outside the runs root)."""
    c = plain(cfg)
    return _sweep_path(str(c["paths"]["runs_root"]), str(c["sweep_name"]))


@functools.lru_cache(maxsize=256)  # one or a few sweeps over a plan's runs, each made once (#25)
def _sweep_path(runs_root: str, sweep_name: str) -> Path:
    name = _safe_name(sweep_name)
    if name == "..":  # the runs root's parent (validation refuses it: config.check_sweep_name): never there
        name = "__"
    return Path(runs_root) / name  # "" and "." are the runs root itself, as they always were


def run_dir(cfg: dict, digest: str) -> Path:
    """<sweep_dir>/<slug>-<hash12>; `digest`: the config's run_hash
    (petsweep.model.resolve.run_dir computes it where the caller has none)."""
    return sweep_dir(cfg) / f"{run_slug(plain(cfg))}-{digest[:12]}"
