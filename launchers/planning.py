"""Planning a sweep from disk: compose every run, validate it, dedupe by run hash, read its status.

Composition is cached per combination of config-group choices (backbone=..., method=...), and plain
key=value overrides are applied to a copy of the cached config, so planning thousands of runs costs
one Hydra composition per distinct group combination.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from petsweep import CONF_DIR
from petsweep.errors import ConfigError, PetsweepError
from petsweep.identity import plain, run_dir, run_hash, semantic_config
from petsweep.rehash import stale_record
from petsweep.status import COMPLETED, QUEUED, RUNNING, RunDir, State, slurm_queue


@dataclass
class PlannedRun:
    """One run of a sweep as it stands on disk."""

    overrides: list[str]
    cfg: dict  # the resolved config (identity.plain)
    run_hash: str
    path: Path
    status: State
    duplicates: int = 0
    extra: dict = field(default_factory=dict)


def run_status(path: Path, queue=slurm_queue) -> State:
    """The run's State from its files: NEW without a status; RUNNING or QUEUED only while a live process or a
    job SLURM still lists stands behind it (`queue` as in RunDir.is_live), INTERRUPTED otherwise (a process
    that died, a node silent for STALE_AFTER_S): a sweep launches it again.
    """
    record = RunDir(path)
    state = record.state()
    if state is None:
        return State.NEW
    if state in (RUNNING, QUEUED):
        return State(state) if record.is_live(queue) else State.INTERRUPTED
    if state == COMPLETED and stale_record(path) is not None:
        return State.NEW  # a record of another identity (an older rule): moved away when the run is launched
    return State(state) if state in State.__members__ else State.INTERRUPTED


def cached_queue():
    """A function asking SLURM for its queue once, on first use (one squeue for a whole plan)."""
    answer = []

    def queue():
        if not answer:
            answer.append(slurm_queue())
        return answer[0]

    return queue


def _copy(value):
    """A deep copy of plain dicts and lists (much faster than copy.deepcopy of a DictConfig)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _interpolates(value) -> bool:
    """An override value like `seed=${apet.seed}`: set as text on a resolved copy, it would never resolve."""
    return "${" in str(value)


class CachedComposer:
    """Compose run configs as plain resolved dicts, one Hydra composition per distinct structural part.

    Structural overrides (group choices, +/~ edits, hydra settings) go through Hydra; plain key=value
    overrides are set on a copy of the cached result. A config whose values interpolate other values is
    always composed by Hydra, since setting one value could change another.
    """

    def __init__(self, compose_fn: Callable[[list[str]], DictConfig]):
        self.compose_fn = compose_fn
        self.groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()} | {"hydra"}
        self._cache: dict[tuple[str, ...], dict | None] = {}

    def _structural(self, override) -> bool:
        key = override.get_key_element()
        return key.startswith(("+", "~", "hydra")) or "/" in key or key in self.groups

    def _base(self, structural: tuple[str, ...]) -> dict | None:
        if structural not in self._cache:
            cfg = self.compose_fn(list(structural))
            # masked_copy keeps a top-level `seed: ${apet.seed}` as written; cfg["seed"] would resolve it
            unresolved = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            interpolates = "${" in OmegaConf.to_yaml(unresolved)
            self._cache[structural] = None if interpolates else plain(cfg)
        return self._cache[structural]

    def __call__(self, overrides: list[str]) -> dict:
        from launchers.expand import parse

        parsed = parse(overrides)
        base = self._base(tuple(o.input_line for o in parsed if self._structural(o)))
        if base is None or any(_interpolates(o.value()) for o in parsed if not self._structural(o)):
            return plain(self.compose_fn(list(overrides)))
        data = _copy(base)
        for o in parsed:
            if not self._structural(o):
                *parents, leaf = o.get_key_element().split(".")
                node = data
                for part in parents:
                    node = node.get(part) if isinstance(node, dict) else None
                if not isinstance(node, dict) or leaf not in node:
                    return plain(self.compose_fn(list(overrides)))  # Hydra words the unknown-key error
                node[leaf] = o.value()
        return data


def _read_local_files(spec, cfg, read: set[str]) -> None:
    """A task on local files reads them once per distinct task, here: a broken line stops the sweep before
    any run exists, instead of failing every run of it."""
    from petsweep.tasks import prepare_task

    if spec.task.source != "files":
        return
    key = json.dumps(semantic_config(cfg)["task"], sort_keys=True, default=str)  # files by content
    if key not in read:
        prepare_task(copy.deepcopy(spec.task), 0)
        read.add(key)


def plan(run_overrides: list[list[str]], compose_fn: Callable[[list[str]], DictConfig]) -> list[PlannedRun]:
    """Validate every run and dedupe identical configs (same run hash: launched once).

    Raises:
        ConfigError: the first run whose config is invalid, naming its overrides.
    """
    # here, not at the top: what reads a sweep's records (status, show) imports this module without torch
    from petsweep.config import resolve_run
    from petsweep.params import check_on_meta

    composer = CachedComposer(compose_fn)
    queue = cached_queue()
    runs: dict[str, PlannedRun] = {}
    read: set[str] = set()
    for overrides in run_overrides:
        try:
            cfg = composer(overrides)
            spec = resolve_run(cfg)
            counts = check_on_meta(spec)  # a method the backbone cannot take fails here, not in a job
            _read_local_files(spec, cfg, read)
        except PetsweepError as err:
            if not isinstance(err, ConfigError):
                raise PetsweepError(f"{err} (in run: {' '.join(overrides)})") from None
            raise ConfigError(err.key, err.value, f"{err.expected} (in run: {' '.join(overrides)})") from None
        digest = run_hash(cfg)
        if digest in runs:
            runs[digest].duplicates += 1
            continue
        path = run_dir(cfg)
        runs[digest] = PlannedRun(
            overrides=list(overrides),
            cfg=cfg,
            run_hash=digest,
            path=path,
            status=run_status(path, queue),
            extra={  # parameter counts from the same meta-device check, and what `budget` resolved to
                **counts.as_dict(),
                **({"budget": spec.budget.as_dict()} if spec.budget is not None else {}),
                **({"budget": _apet_budget(spec, counts)} if _apet_budget(spec, counts) else {}),
            },
        )
    return list(runs.values())


def _apet_budget(spec, counts) -> dict | None:
    """APET's budget as the plan shows it: the requested K (apet.scale, or budget=) and the achieved count."""
    budget = getattr(spec.method, "budget", None) if spec.method.config.name == "apet" else None
    if budget is None or budget.k is None:
        return None
    achieved = counts.pet_params
    return {
        "requested": budget.spec.scale,
        "target": budget.k,
        "achieved": achieved,
        "knobs": {"K": budget.k},
    }
