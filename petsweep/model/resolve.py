"""Resolving a run: its config validated and typed, its method built, checked on the backbone and sized to
its budget (counted on the meta device); and the id of a config, which holds what its budget chose.

This was spec/config.resolve_run and spec/identity's budget step (#23): what a run is, as data, is spec/'s
(the schema, the checks of the data, the hashing of a semantic config); building the method object and
counting it needs the methods and the model, so resolving a run lives on the model floor. Every path (run,
plan, sweeps, the run id) resolves here and sees the same choice. Importing this module imports no torch;
resolving a run does.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from petsweep.methods import METHODS
from petsweep.model.budget import OLD_RULE, check_rule, fold_apet, identifying_rule, method_class, solve
from petsweep.spec import identity
from petsweep.spec.apet import ApetSpec, Budget
from petsweep.spec.config import (
    DeepSpeedConfig,
    RunSpec,
    TrainerConfig,
    check_staged_preset,
    typed,
    typed_parts,
)
from petsweep.spec.errors import ConfigError
from petsweep.spec.resolved import ResolvedRun
from petsweep.spec.typecheck import plain


def resolve_run(cfg: dict) -> RunSpec:
    """Validate a composed config (types, choices, backbone/task fit, APET state) and type its parts.

    Args:
        cfg: the composed config as plain data (typecheck.plain: the caller converts a DictConfig once; one
            given here is converted the same way). It is never changed: the spec's `config` is the config as
            the run records it (config.yaml), with what `budget` resolved to written in (_recorded).
    """
    from petsweep.methods.base import build_method

    given = plain(cfg)
    data = fold_apet(given)  # method=apet budget=X is apet.scale=X
    backbone, task, apet = typed_parts(data)
    method = build_method(data["method"])
    check_apet_group(method, apet)
    method.check(backbone)
    trainer = typed(TrainerConfig, dict(data["trainer"]), "trainer")
    if method.is_the_head and not method.config.train_head and not trainer.eval_only:
        raise ConfigError(
            "method.train_head",
            False,
            "method head trains the task head alone, so nothing would train; "
            "trainer.eval_only=true scores the untrained head",
        )
    deepspeed = typed(DeepSpeedConfig, dict(data.get("deepspeed") or {}), "deepspeed")
    check_staged_preset(method, trainer.max_steps, deepspeed)  # `auto`: again once resolved (run.app)
    spec = RunSpec(
        backbone=backbone,
        method=method,
        task=task,
        trainer=trainer,
        deepspeed=deepspeed,
        seed=data["seed"],
        sweep_name=str(data["sweep_name"]),
        runs_root=str(data["paths"]["runs_root"]),
        wandb=(data.get("logger") or {}).get("wandb") or None,
        config=given,
    )
    if apet.scale is not None:  # K on this backbone, counted with the spec as a reference (apet_budget)
        spec = dataclasses.replace(spec, apet=apet_budget(apet, spec))
    # a config without budget_rule (recorded before it) was solved by #24's first rule (budget.OLD_RULE)
    rule = data.get("budget_rule", OLD_RULE)
    check_rule(rule)
    if data.get("budget") is not None:  # sizes the method's knob (or accepts a knob-less method as it is)
        spec.method, spec.budget = solve(data["budget"], spec, rule, without_rule="budget_rule" not in data)
    spec.config = _recorded(given, spec, apet)
    return spec


def check_apet_group(method, apet: ApetSpec) -> None:
    """The top-level `apet` group is on (apet.scale set) exactly for a method sized by it
    (PETMethod.budget_strategy "apet_scale": its budget is apet.scale); a budget without such a method, or
    such a method without a budget, is refused in one line."""
    if (apet.scale is not None) != (method.budget_strategy == "apet_scale"):
        raise ConfigError(
            "apet.scale",
            apet.scale,
            "APET runs are method=apet with a budget apet.scale "
            "(a method name, an integer, or ratio); set both, or neither",
        )


def _recorded(data: dict, spec: RunSpec, apet: ApetSpec) -> dict:
    """The config with what `budget` resolved to written in, so that the run's config.yaml reads what it
    computes: APET's `budget=X` becomes `apet.scale=X` (budget null: the very config of that spelling), a
    knob's chosen values replace the method's own (budget stays: the request) and the keys the method clears
    are null (PETMethod.budget_clears). A copy where anything is written (`data` itself where nothing is); the
    id is unchanged by it (semantic_config resolves the budget the same way)."""
    if data.get("budget") is None:
        return data
    if spec.method.budget_strategy == "apet_scale":
        return _updated(_updated(data, "apet.scale", apet.scale), "budget", None)
    if spec.budget is None:
        return data
    recorded = data
    for key, value in {**spec.budget.knobs, **dict.fromkeys(spec.method.budget_clears)}.items():
        recorded = _updated(recorded, f"method.{key}", value)
    return recorded


def _updated(data: dict, dotted: str, value) -> dict:
    """A copy of `data` with the dotted key set, as OmegaConf.update sets it in a DictConfig (a key keeps its
    place); the groups on the way are copied, the others shared."""
    head, _, rest = dotted.partition(".")
    return {**data, head: _updated(dict(data.get(head) or {}), rest, value) if rest else value}


def apet_budget(apet: ApetSpec, spec: RunSpec) -> Budget:
    """K for the run's backbone: an integer as given, a method's exact count on the meta device, or (ratio)
    left to the attach, which knows how many scalars are eligible."""
    from petsweep.methods.base import build_method
    from petsweep.model.params import check_on_meta

    if apet.scale == "ratio":
        return Budget(apet, None)
    if isinstance(apet.scale, int):
        return Budget(apet, apet.scale)
    names = [n for n in METHODS.names() if METHODS.get(n).names_a_budget]
    if apet.scale not in names:
        raise ConfigError(
            "apet.scale",
            apet.scale,
            f"is not a budget; give a positive integer, ratio, or a method name: {', '.join(names)}",
        )
    node = {
        "name": apet.scale,
        **METHODS.get(apet.scale).budget_keys,
    }  # BitFit: with OpenDelta's added biases
    reference = dataclasses.replace(spec, method=build_method(node), config={})
    return Budget(apet, check_on_meta(reference).pet_params)


# The run's id: spec.identity hashes a semantic config; what `budget=` chose is counted here first.


def budget_form(data: dict, spec: RunSpec | None = None) -> dict:
    """`budget` (petsweep/model/budget.py) in the form that identifies the run, in a plain canonical copy of
    the config (identity.canonical), for identity.semantic_form: for APET folded into apet.scale (`budget=X`
    and `apet.scale=X` are one run); for a method with a knob the request stays and the knob values it chose
    replace the method's own (what is computed, and what was asked for), the keys the method clears null.
    `budget_rule` counts only where it changes the choice: the oldest rule that chooses the same knobs
    (budget.identifying_rule; #24's first rule, OLD_RULE, what a config without the key was solved by, is
    left out: ADDED_DEFAULTS), so runs that rules size alike keep their ids and old records re-identify as
    what they computed. `spec`: the config's validated spec where the caller holds it (budget_identity)."""
    rule = data.pop("budget_rule", None)
    if data.get("budget") is None or not isinstance(data.get("method"), dict):
        return data
    name = data["method"].get("name")
    if name is not None and method_class(name).budget_strategy == "apet_scale":
        return fold_apet(data)
    knobs, named = budget_identity(data, rule, spec)
    if named is not None:
        data["budget_rule"] = named
    data["method"].update(knobs)
    for key in method_class(name).budget_clears:
        data["method"][key] = None
    return data


# The budget's identity of a config, once per process: (the groups the solver reads, rule) -> (the knobs the
# rule chose, the identifying rule). It costs a resolve_run and a solve per other rule, and a process hashes
# one config many times (the run's id, its record, its stale check, a plan's seeds, every round of a
# threshold search; R23 F5/F10). The key holds what the choice is a function of (model.memo.meta_key reads
# the backbone, method, APET and task; solve the budget and rule), not the seed, trainer or paths: a
# sweep's seeds and the record's resolved trainer.ranks share one choice.
_CHOICE_GROUPS = ("backbone", "method", "apet", "task", "budget")


@dataclasses.dataclass(frozen=True)
class _Choice:
    """budget_identity's memo key: `text` (the groups the choice reads, and the rule) is compared and hashed;
    the config and the caller's spec ride along for a miss, as model.memo.MetaKey's spec does."""

    text: str
    data: dict = dataclasses.field(compare=False, hash=False)
    rule: str | None = dataclasses.field(compare=False, hash=False)
    spec: object = dataclasses.field(compare=False, hash=False)
    answer: tuple | None = dataclasses.field(default=None, compare=False, hash=False)  # known: kept as is


def budget_identity(data: dict, rule: str | None, spec: RunSpec | None = None) -> tuple[dict, str | None]:
    """(knobs chosen, identifying rule) of a plain canonical config with a knob method's `budget`, solved by
    `rule` once per process (None: the config had no budget_rule, a record from before the key: OLD_RULE,
    or the solver it replaced in place, budget._first_solved). `spec`: the config's validated RunSpec where
    the caller holds it (resolved_run, the plan): its choice is used and the other rules are solved on it,
    so nothing is resolved again. The answer is kept for the config as given and as its run records it
    (the chosen knobs written in, _recorded): the two are one run with one id (#24 review round 3,
    H2), and a sweep reads its records."""
    knobs, named = _identity_of(_Choice(_choice_text(data, rule), data, rule, spec))
    cleared = dict.fromkeys(method_class(data["method"].get("name")).budget_clears)
    recorded = {**data, "method": {**data["method"], **knobs, **cleared}}
    _identity_of(_Choice(_choice_text(recorded, rule), recorded, rule, spec, (knobs, named)))  # the same run
    return dict(knobs), named


@functools.lru_cache(maxsize=4096)
def _identity_of(key: _Choice) -> tuple[dict, str | None]:
    """The memo (a pure function of key.text; callers get copies): the only state kept between calls."""
    return key.answer if key.answer is not None else _identified(key.data, key.rule, key.spec)


def _choice_text(data: dict, rule: str | None) -> str:
    return json.dumps([{g: data.get(g) for g in _CHOICE_GROUPS}, rule], sort_keys=True, default=str)


def _identified(data: dict, rule: str | None, spec: RunSpec | None) -> tuple[dict, str | None]:
    """budget_identity's answer, computed."""
    if spec is None:  # a config without the key is resolved as one (resolve_run reads its absence)
        spec = resolve_run(data if rule is None else {**data, "budget_rule": rule})
    rule = OLD_RULE if rule is None else rule
    choice = spec.budget

    # the older rules are asked from the chosen knobs, not from the request's: a run's config.yaml holds the
    # chosen values, and DePT's older rules start from the configured length, so asking them from the request
    # gave a planned run (length 60 from the YAML) and its own record (the chosen length) two ids (#24 review
    # round 3, H2). Each is solved on the spec as resolve_run would type the config with those knobs: only
    # the method differs (the solver's memo keeps each count once).
    from petsweep.methods.base import build_method

    solved = dataclasses.replace(spec, method=build_method({**data["method"], **choice.knobs}))

    def knobs_under(other: str) -> dict:
        return choice.knobs if other == rule else solve(data["budget"], solved, other)[1].knobs

    return choice.knobs, identifying_rule(data["method"].get("name"), rule, knobs_under)


def semantic_config(cfg: dict, spec: RunSpec | None = None) -> dict:
    """The resolved config as a plain dict holding exactly what identifies the run (spec/identity.py's rule),
    its budget resolved (budget_form; `spec`: the config's validated spec, where the caller holds it) and
    the rule told which method is the task head itself (_is_the_head). The one semantic config of every
    caller: spec/identity.py hashes what it is given and cannot ask the methods."""
    return identity.semantic_form(budget_form(identity.canonical(plain(cfg)), spec), _is_the_head)


def _is_the_head(name: str | None) -> bool:
    """PETMethod.is_the_head of method `name`, for identity's trainer.head_lr rule: trainer.head_lr changes
    nothing where the head is the method's own parameters. A name no method has (a record of a method since
    removed) is no head, as the rule read it before it asked the methods."""
    return name in METHODS.names() and METHODS.get(name).is_the_head


def run_hash(cfg: dict, spec: RunSpec | None = None) -> str:
    """The run's id: the sha256 of its semantic config (identity.semantic_hash); `spec` as semantic_config."""
    return identity.semantic_hash(semantic_config(cfg, spec))


def seeded_run_hash(cfg: dict):
    """run_hash of `cfg` with its top-level seed set to another integer, as a function of that seed
    (identity.seeded_run_hash, with the budget resolved)."""
    return identity.seeded_run_hash(cfg, semantic_config)


def run_dir(cfg: dict, digest: str | None = None) -> Path:
    """<runs_root>/<sweep_name>/<slug>-<hash12>; `digest`: the config's run_hash, where the caller has it."""
    return identity.run_dir(cfg, digest or run_hash(cfg))


def resolved_run(cfg: dict, overrides: list[str] | None = None) -> ResolvedRun:
    """Validate a composed config (resolve_run) and resolve it as the run records it (what `budget` resolved
    to written in); the typed spec stays with it in this process."""
    spec = resolve_run(plain(cfg))
    return unvalidated_run(spec.config, overrides, typed=spec)


def unvalidated_run(
    cfg: dict, overrides: list[str] | None = None, typed: RunSpec | None = None
) -> ResolvedRun:
    """The ResolvedRun of a config that the process executing it validates (a fused group given as configs):
    its id and directory computed here."""
    config = dict(plain(cfg))
    config.pop("hydra", None)
    digest = run_hash(config, typed)  # a budget's choice read from the spec, not resolved again
    return ResolvedRun(config, digest, str(run_dir(config, digest)), overrides, typed=typed)
