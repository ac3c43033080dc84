"""Planning a sweep from disk: compose every run, validate it, dedupe by run hash, read its status.

Composition is cached per combination of config-group choices (backbone=..., method=...), and plain
key=value overrides are applied to a copy of the cached config, so planning thousands of runs costs
one Hydra composition per distinct group combination.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, get_args

from omegaconf import DictConfig, OmegaConf

from petsweep import CONF_DIR
from petsweep.model.resolve import run_dir, run_hash, seeded_run_hash, semantic_config
from petsweep.records import index
from petsweep.records.status import COMPLETED, QUEUED, RUNNING, RunDir, State, slurm_queue
from petsweep.run.rehash import identity_check, stale_record
from petsweep.spec.errors import ConfigError, ConfigErrors, PetsweepError
from petsweep.spec.resolved import ResolvedRun
from petsweep.spec.typecheck import plain

# what plan() does with a COMPLETED run whose id needs no budget solved (plan's docstring says each)
Finished = Literal["validated", "from_records", "left_as_is"]
FINISHED = get_args(Finished)


@dataclass
class PlannedRun:
    """One run of a sweep as it stands on disk."""

    overrides: list[str]
    # the resolved config (identity.plain); None: a finished run launchers.plan_memo answered, never composed
    cfg: dict | None
    run_hash: str
    path: Path
    status: State
    duplicates: int = 0
    extra: dict = field(default_factory=dict)

    def resolved(self, overrides: list[str] | None = None) -> ResolvedRun:
        """What crosses into the process that executes the run (petsweep.run.app.execute): the config as
        planned and validated, its id and directory; `overrides`: what its provenance records."""
        return ResolvedRun(self.cfg, self.run_hash, str(self.path), overrides)


def run_status(path: Path, queue=slurm_queue, solve: bool = True) -> State:
    """The run's State from its files: NEW without a status; RUNNING or QUEUED only while a live process or a
    job SLURM still lists stands behind it (`queue` as in RunDir.is_live), INTERRUPTED otherwise (a process
    that died, a node silent for STALE_AFTER_S): a sweep launches it again. `solve=False`: a `budget=`
    record's identity is not checked (it needs the budget solver, torch: petsweep.run.rehash.stale_record).
    """
    record = RunDir(path)
    state = record.state()
    if state is None:
        return State.NEW
    if state in (RUNNING, QUEUED):
        return State(state) if record.is_live(queue) else State.INTERRUPTED
    if state == COMPLETED and stale_record(path, solve=solve) not in (None, index.UNCHECKED):
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


class _Setting(NamedTuple):
    """One override as CachedComposer applies it."""

    line: str  # as typed
    parts: list[str]  # the key's dotted parts
    value: object  # None where structural
    is_seed: bool
    structural: bool  # a config-group choice, a +/~ edit or a Hydra setting: Hydra composes it
    interpolates: bool  # the value is `${...}`: Hydra composes the run whole


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
        self._overrides: dict[str, _Setting] = {}  # per override text
        self._paths: dict[tuple, bool] = {}  # (structural part, *key parts) -> _settable_at

    def _structural(self, override) -> bool:
        return self._structural_key(override.get_key_element())

    def _structural_key(self, key: str) -> bool:
        # group@package is a group choice whatever its group (R38 Y1: a user's own group set as a value)
        return key.startswith(("+", "~", "hydra")) or "/" in key or "@" in key or key in self.groups

    def _base(self, structural: tuple[str, ...]) -> dict | None:
        if structural not in self._cache:
            self._cache[structural] = _settable(self.compose_fn(list(structural)))
        return self._cache[structural]

    def keep(self, overrides: list[str], cfg: DictConfig) -> None:
        """Take `cfg`, Hydra's composition of `overrides` but for their sweep values (the config a Hydra
        sweeper is set up with), as the base of every run whose structural overrides are the same: its plain
        values are the runs' own or set again on a copy, so Hydra need not compose it a second time."""
        from launchers.expand import parse

        # the composition's own groups too: a --config-dir or searchpath may add groups conf/ lacks (R38 Y1)
        choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
        self.groups |= {str(group) for group in (choices or {})}
        fixed = [o for o in parse(overrides) if not o.is_sweep_override()]
        self._cache.setdefault(tuple(o.input_line for o in fixed if self._structural(o)), _settable(cfg))

    def _read(self, overrides: list[str]) -> list[_Setting]:
        """Each override as a _Setting, parsed once per distinct text."""
        try:
            return [self._overrides[text] for text in overrides]
        except KeyError:
            pass
        new = [text for text in overrides if text not in self._overrides]
        if not all(_int_setting(text) for text in new):
            from launchers.expand import parse

            parse(overrides)  # words a parse error for the whole run
        for text in new:
            self._overrides[text] = self._setting(text)
        return [self._overrides[text] for text in overrides]

    def _setting(self, text: str) -> _Setting:
        simple = _int_setting(text)  # key=<integer>: as Hydra's parse gives it, without its 1 ms a text
        if simple is not None:
            key, value = simple
            structural = self._structural_key(key)
            return _Setting(
                text, key.split("."), None if structural else value, key == "seed", structural, False
            )
        from launchers.expand import parse

        [o] = parse([text])
        key = o.get_key_element()
        structural = self._structural_key(key)
        value = None if structural else o.value()
        return _Setting(o.input_line, key.split("."), value, key == "seed", structural, _interpolates(value))

    def values_under(self, *parts: str) -> list:
        """The values of the overrides read so far whose key is `parts` or under it (task.files.train=...)."""
        n = len(parts)
        return [r.value for r in self._overrides.values() if tuple(r.parts[:n]) == parts and not r.structural]

    def base_of(self, overrides: list[str]) -> tuple[tuple[str, ...], dict | None]:
        """The run's structural overrides and the composition keyed sets its plain values on, composed once
        per distinct structural part; None where keyed has Hydra compose the run whole (a value of the
        composition, or one of the run's, interpolates)."""
        read = self._read(overrides)
        structural = tuple(r.line for r in read if r.structural)
        values = [r for r in read if not r.structural]
        if any(r.interpolates for r in values):
            return structural, None
        base = self._base(structural)
        if base is None or not all(self._settable_at(structural, base, r.parts) for r in values):
            return structural, None  # keyed has Hydra compose it (a key the composition lacks: a group?)
        return structural, base

    def _settable_at(self, structural: tuple[str, ...], base: dict, parts: list[str]) -> bool:
        """Whether keyed can set a value at `parts` of the composition (a dict holds its last part)."""
        found = self._paths.get((structural, *parts))
        if found is None:
            node = base
            for part in parts[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            found = self._paths[(structural, *parts)] = isinstance(node, dict) and parts[-1] in node
        return found

    def __call__(self, overrides: list[str]) -> dict:
        return self.keyed(overrides)[0]

    def keyed(self, overrides: list[str]) -> tuple[dict, tuple | None]:
        """The run's config and a key of everything but its top-level seed: runs of one key have equal
        configs but for `seed` (None where Hydra composed the run: its values may interpolate the seed).

        The config shares with the cached composition every dict that no override writes into (#25: a deep
        copy per run was 13% of a plan and most of its memory); its readers (identity, costing, launchers)
        never write into it."""
        read = self._read(overrides)
        structural = tuple(r.line for r in read if r.structural)
        base = self._base(structural)
        values = [r for r in read if not r.structural]
        if base is None or any(r.interpolates for r in values):
            return plain(self.compose_fn(list(overrides))), None
        data = dict(base)
        copied = set()  # ids of the dicts made for this run: written into in place
        for setting in values:
            *parents, leaf = setting.parts
            node = data
            for part in parents:
                child = node.get(part) if isinstance(node, dict) else None
                if isinstance(child, dict) and id(child) not in copied:
                    child = node[part] = dict(child)
                    copied.add(id(child))
                node = child
            if not isinstance(node, dict) or leaf not in node:
                return plain(self.compose_fn(list(overrides))), None  # Hydra words the unknown-key error
            node[leaf] = setting.value
        key = (structural, tuple(r.line for r in values if not r.is_seed))
        return data, key


# at most 4000 digits: int() refuses over 4300 (Python's limit on converting text), Hydra words that error
_INT_SETTING = re.compile(
    r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)=(-?(?:0|[1-9][0-9]{0,3999}))"
)


def _int_setting(text: str) -> tuple[str, int] | None:
    """(key, value) of `key=<integer>`, as Hydra's grammar parses it; None for anything else."""
    found = _INT_SETTING.fullmatch(text)
    return (found[1], int(found[2])) if found else None


def _settable(cfg: DictConfig) -> dict | None:
    """A composition as a plain base that run values are set on, or None where its values interpolate."""
    # masked_copy keeps a top-level `seed: ${apet.seed}` as written; cfg["seed"] would resolve it
    unresolved = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return None if "${" in OmegaConf.to_yaml(unresolved) else plain(cfg)


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


def plan(
    run_overrides: list[list[str]],
    compose_fn: Callable[[list[str]], DictConfig],
    composed: tuple[list[str], DictConfig] | None = None,
    finished: Finished = "validated",
    composer: CachedComposer | None = None,
) -> list[PlannedRun]:
    """Validate every run and dedupe identical configs (same run hash: launched once).

    Validation (types, choices, the meta-device attach, local files) runs once per distinct config but for
    its top-level seed, which validation reads only to check that it is an integer (checked per run); each
    run is hashed once (#25). `composed`: overrides and a config Hydra composed of them already (a sweeper's
    own config: CachedComposer.keep), not composed again. `finished`: what becomes of a COMPLETED run whose
    id needs no budget solved. "validated" (the default): validated and counted on the meta device as any
    run. "from_records" (`petsweep plan`, which imports no torch where it can): its counts come from the
    run's result.json instead of the meta device. "left_as_is" (a launch: launchers.sweep.run_sweep): it is
    not counted, nor checked on the meta device, since nothing launches it and no launcher reads its counts;
    its config is still validated (resolve_run, which needs no torch: a setting outside the id,
    `optimized_metric=bogus`, is refused as before), once per validation key. A resume of a finished sweep
    imports no torch (#25). `composer`: one that composed some of the runs' bases already (plan_memo's key).

    Raises:
        ConfigError: the first run whose config is invalid, naming its overrides.
    """
    # here, not at the top: what reads a sweep's records (status, show) imports this module without torch
    from petsweep.spec.config import check_seed

    composer = composer or CachedComposer(compose_fn)
    if composed is not None:
        composer.keep(*composed)
    queue = cached_queue()
    runs: dict[str, PlannedRun] = {}
    read: set[str] = set()
    checked: dict[tuple, dict] = {}  # validation key (CachedComposer.keyed) -> the run's counts and budget
    hashers: dict[tuple, Callable[[int], str]] = {}  # validation key -> run_hash as a function of the seed
    listed: dict[Path, object] = {}  # a sweep dir's index snapshot or entries, read once (_listed_status)
    refused: dict = {}  # a budget a run cannot take: (error, method) by validation key, all named at once
    recorded: dict[tuple, dict] = {}  # validation key -> the counts a finished run of it recorded
    resolved: set[tuple] = set()  # validation keys of finished runs a launch checked without torch
    if finished not in FINISHED:
        raise ValueError(f"plan(finished={finished!r}): one of {FINISHED}")
    status_first = finished != "validated"  # read a run's status before validating it
    for overrides in run_overrides:
        key = None
        try:
            cfg, key = composer.keyed(overrides)
            if key is not None and key in refused:
                continue  # the same cell at another seed
            extra = checked.get(key) if key is not None else None
            looked = None  # (id, run dir, state), read before validating: a finished run needs no validation
            answered = False  # the run is finished and its record says what the plan shows of it
            if extra is None and status_first and hashes_without_torch(cfg):
                looked = _looked_up(cfg, key, hashers, queue, listed)
                if looked is not None and looked[2] == State.COMPLETED:
                    if finished == "left_as_is":
                        _resolved_once(cfg, key, resolved)
                    extra = {} if finished == "left_as_is" else _recorded_counts(looked[1], key, recorded)
                    answered = extra is not None
            if extra is None:
                extra = _validate(cfg, read)
                if key is not None:
                    checked[key] = extra
            elif not answered:
                check_seed(cfg["seed"])  # the one check of resolve_run that reads the seed
        except PetsweepError as err:
            if not isinstance(err, ConfigError):
                raise PetsweepError(f"{err} (in run: {' '.join(overrides)})") from None
            err = ConfigError(err.key, err.value, f"{err.expected} (in run: {' '.join(overrides)})")
            if err.key != "budget" or key is None:
                raise err from None
            refused.setdefault(key, (err, _method_of(cfg)))
            continue
        digest = looked[0] if looked is not None else _run_id(cfg, key, hashers)
        if digest in runs:
            runs[digest].duplicates += 1
            continue
        path = looked[1] if looked is not None else run_dir(cfg, digest)
        runs[digest] = PlannedRun(
            overrides=list(overrides),
            cfg=cfg,
            run_hash=digest,
            path=path,
            status=looked[2] if looked is not None else _listed_status(path, queue, listed),
            extra=dict(extra),  # a run's own: the plan table adds its hours
        )
    for found in listed.values():
        if hasattr(found, "finish"):
            found.finish()  # what was read from run files goes into the sweep's index
    if len(refused) == 1:  # one cell: its line alone, as any refusal
        raise next(iter(refused.values()))[0]
    if refused:
        raise _budget_refusals(list(refused.values()), runs)
    return list(runs.values())


def _resolved_once(cfg: dict, key: tuple | None, resolved: set[tuple]) -> None:
    """resolve_run of a finished run's config (types, choices, every setting; no torch, no meta device),
    once per validation key (runs of one key differ in their seed alone, checked here per run)."""
    from petsweep.model.resolve import resolve_run
    from petsweep.spec.config import check_seed

    if key is None or key not in resolved:
        resolve_run(_copy(cfg))  # a private copy: the run's config shares dicts with other runs'
        if key is not None:
            resolved.add(key)
    else:
        check_seed(cfg["seed"])


def _run_id(cfg: dict, key: tuple | None, hashers: dict[tuple, Callable[[int], str]]) -> str:
    """The run's id, hashed once per validation key but for the seed (runs of one key differ in it alone)."""
    if key is None:
        return run_hash(cfg)
    if key not in hashers:
        hashers[key] = seeded_run_hash(cfg)
    return hashers[key](cfg["seed"])


def hashes_without_torch(cfg: dict) -> bool:
    """Whether the config's id is hashed from its values alone, no budget solved (#23, R23 F3): no `budget=`
    (a knob method's id holds what the solver chose on the meta device) and no method sized by an APET-style
    budget (the plan's budget column is the solved K). Such a config's finished runs answer the plan from
    their records; the others are validated first, as before."""
    from petsweep.model.budget import method_class

    if cfg.get("budget") is not None:
        return False
    name = (cfg.get("method") or {}).get("name")
    try:
        return name is not None and method_class(name).budget_strategy != "apet_scale"
    except Exception:  # an unknown method: validation words the error
        return False


def _looked_up(cfg: dict, key, hashers: dict, queue, listed: dict) -> tuple[str, Path, State] | None:
    """(id, run dir, state) of a run, read before its config is validated (a COMPLETED record's id is checked
    as every status the plan reads); None where hashing fails: the config is validated first then, and the
    validation words the error as before."""
    try:
        digest = _run_id(cfg, key, hashers)
        path = run_dir(cfg, digest)
    except Exception:
        return None
    return digest, path, _listed_status(path, queue, listed)


COUNTS = (
    "total_params",
    "nonembedding_params",
    "head_params",
    "pet_params",
    "trainable_params",
    "count_notes",
)


def _recorded_counts(path: Path, key, recorded: dict) -> dict | None:
    """What the plan shows of a finished run (model.params.ParamCounts's fields), from its result.json: the
    counts the run made on its real model are the meta device's (params.py), and runs of one validation key
    differ in their seed alone, which no count reads, so one record per key is opened. None where the record
    lacks a count (it is validated instead)."""
    if key is not None and key in recorded:
        return recorded[key]
    result = RunDir(path).result() or {}
    if any(name not in result for name in COUNTS):
        return None
    counts = {name: result[name] for name in COUNTS}
    counts["count_notes"] = list(counts["count_notes"] or [])
    if key is not None:
        recorded[key] = counts
    return counts


def _method_of(cfg) -> str:
    return str((cfg.get("method") or {}).get("name"))


def _budget_refusals(refused: list[tuple[ConfigError, str]], runs: dict) -> ConfigErrors:
    """Every cell of a sweep that cannot take its budget, one line each, and how to leave them out (#24: a
    mixed sweep `method=lora,selective_module budget=N` stopped at the first such cell)."""
    from petsweep.model.budget import KNOBS

    bad = sorted({method for _, method in refused})
    fine = sorted({_method_of(r.cfg) for r in runs.values()} - set(bad))
    keep = [f"sweep method={','.join(fine)} without them"] if fine else []
    sized, knobless = [m for m in bad if m in KNOBS], [m for m in bad if m not in KNOBS]
    if sized:
        keep.append(f"give method={','.join(sized)} a budget each reaches in a sweep of its own")
    if knobless:  # no budget= ever sizes it (the head's count is 0: no budget names it; #24 round 2, G3)
        keep.append(f"run method={','.join(knobless)} without budget= in a sweep of its own (no size knob)")
    return ConfigErrors(
        [err for err, _ in refused],
        f"{len(refused)} cells above cannot take their budget and nothing ran; leave them out: "
        f"{', and '.join(keep)} (`petsweep count` shows a method's count)",
    )


def validate(run_overrides: Iterable[list[str]], compose_fn: Callable[[list[str]], DictConfig]) -> list[dict]:
    """Compose and validate runs as run.py's pre-flight does for a sweeper not petsweep's (resolve_run),
    raising the first invalid run's error as resolve_run or the composition words it: one Hydra composition
    per distinct choice of config groups, one resolve_run per config but its seed (#25: a resume composed
    once per value of every axis, 1,000 compositions for seed=range(0,1000)). Returns each run's config as
    composed (plain data, sharing unwritten dicts: CachedComposer.keyed), so a caller composes none again."""
    from petsweep.model.resolve import resolve_run
    from petsweep.spec.config import check_seed

    composer = CachedComposer(compose_fn)
    checked: set[tuple] = set()
    configs = []
    for overrides in run_overrides:
        cfg, key = composer.keyed(overrides)
        configs.append(cfg)
        if key is not None and key in checked:
            check_seed(cfg["seed"])
            continue
        resolve_run(_copy(cfg))
        if key is not None:
            checked.add(key)
    return configs


def _validate(cfg: dict, read: set[str]) -> dict:
    """Validate one run's config (resolve_run, the meta-device attach, local task files) and return what the
    plan shows of it: parameter counts from the meta-device check, and what `budget` resolved to."""
    # here, not at the top: what reads a sweep's records (status, show) imports this module without torch
    from petsweep.model.params import check_on_meta
    from petsweep.model.resolve import resolve_run

    spec = resolve_run(_copy(cfg))  # a private copy: the run's config shares dicts with other runs'
    if spec.budget is not None:  # the ids' budget from this spec: the run's seeds resolve nothing again
        semantic_config(cfg, spec)
    counts = check_on_meta(spec)  # a method the backbone cannot take fails here, not in a job
    _read_local_files(spec, cfg, read)
    apet = _apet_budget(spec, counts)
    return {
        **counts.as_dict(),
        **({"budget": spec.budget.as_dict()} if spec.budget is not None else {}),
        **({"budget": apet} if apet else {}),
    }


def _listed_status(path: Path, queue, listed: dict[Path, object]) -> State:
    """run_status, read from the sweep's index (petsweep.records.index, as `petsweep status` reads it) where
    it holds the run's files as they are now, so a resume of a finished sweep of 10^6 runs opens no run's
    records (#25); a run the index lacks or holds otherwise, or RUNNING or QUEUED (whether a process or job is
    still behind it), is read from its files. Without an index (PETSWEEP_INDEX=0): NEW without opening a file
    where the run's dir is not in its sweep dir's listing (taken once per sweep dir)."""
    from petsweep.records import index

    parent = path.parent
    if parent not in listed:
        listed[parent] = _listing(parent)
    found = listed[parent]
    if isinstance(found, index.Snapshot):
        info = found.entry(path.name)
        if info is None:
            return State.NEW  # no status.json: never started
        state = indexed_state(info, str(path), queue)
        if state is None:
            return run_status(path, queue)
        return state
    if found is not None and path.name not in found:
        return State.NEW
    return run_status(path, queue)


def read_info(path: str) -> dict:
    """A run's status fields for the sweep index (petsweep.records.index.info_of), read from its files."""
    from petsweep.records.index import info_of

    return info_of(RunDir(Path(path)), identity_check)


def read_info_on_disk(path: str) -> dict:
    """read_info for the commands that only read records (`petsweep status`, `show`): a `budget=` record's
    identity is left unchecked (its entry says `unchecked`), as the budget solver would load torch."""
    from petsweep.records.index import info_of

    return info_of(RunDir(Path(path)), functools.partial(identity_check, solve=False))


def indexed_state(info: dict, path: str, queue) -> State | None:
    """run_status from a run's index entry; None where only its files can say (RUNNING or QUEUED: whether a
    process or job is still behind it). A finished run whose check warned (config.yaml edited under a
    record that is used) warns again, as stale_record did when it read the files (warn_finished)."""
    state = info.get("state")
    if state in (State.RUNNING, State.QUEUED) or state not in State.__members__:
        return None
    if state == State.COMPLETED and info.get("stale") is not None:
        return State.NEW
    if state == State.COMPLETED:
        warn_finished(path, info)
    return State(state)


def warn_finished(path: str, info: dict) -> None:
    """The warning a finished run's identity check gave when its files were read (its index entry keeps it),
    given where the entry answers instead (once per run and process: rehash.warn_record)."""
    if info.get("warning"):
        from petsweep.run.rehash import warn_record

        warn_record(path, info["warning"])


def _listing(sweep: Path):
    """How _listed_status reads a sweep dir: its index snapshot, or (no index) the names in it, or None
    (unreadable: each run is asked)."""
    from petsweep.records import index

    if index.enabled() and sweep.is_dir():
        return index.Snapshot(sweep, read_info=read_info, lazy=True)
    try:
        return set(os.listdir(sweep))
    except FileNotFoundError:
        return set()  # no sweep dir yet: every run is new
    except OSError:
        return None


def _apet_budget(spec, counts) -> dict | None:
    """APET's budget as the plan shows it: the requested K (apet.scale, or budget=) and the achieved count."""
    budget = spec.apet
    if budget is None or budget.k is None:
        return None
    achieved = counts.pet_params
    return {
        "requested": budget.spec.scale,
        "target": budget.k,
        "achieved": achieved,
        "knobs": {"K": budget.k},
    }
