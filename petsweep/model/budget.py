"""Matched budgets: the top-level key `budget` sizes a method's knob to a parameter count.

    python run.py method=lora budget=bitfit   # the LoRA rank whose count is nearest BitFit's here
    python run.py -m method=lora,adapter,prompt,bitfit,apet budget=bitfit backbone=minilm-l1,minilm-l2

`budget` is a method name (the target is that method's exact `pet_params` on the run's backbone, counted on
the meta device as APET's `apet.scale` does; BitFit with add_biases) or a positive integer. For the run's
method the solver picks the knob values whose exact meta-device count is nearest the target over every value
its knobs take (`budget_rule=global`; RULES keeps the older rules). Each method declares how it is sized
(PETMethod.budget_knobs, budget_strategy, budget_replaces, budget_clears): this module keys strategies, not
method names. It runs inside model.resolve.resolve_run, so every path (run, plan, sweeps, the run id) sees
the same choice:

- APET: `budget=X` is a spelling of `apet.scale=X` (same run, same id): it is folded into apet.scale, and
  where both are set `budget` wins (method=apet sets apet.scale=lora by default);
- a method with a knob: the chosen knob values replace the method's own in the run; the id hashes the request
  (`budget`) and the chosen values (model.resolve.semantic_config);
- a method without a knob is accepted only where its own count is the target (bitfit at budget=bitfit: one
  sweep over methods can hold it), else refused in one line naming the methods that take a budget;
- a count the method cannot come within TOLERANCE of is refused in one line.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from petsweep.model.memo import MetaKey, meta_key
from petsweep.spec.errors import ConfigError

TOLERANCE = 0.10  # the achieved count may differ from the requested one by at most this fraction
# `budget_rule`: how a knob is chosen, oldest first (each kept so that the runs it chose keep their ids and
# can be asked for again). below: #24's first solver: LoRA/adapter took the uniform width at or below the
# target and filled with plus_one only, selective_module took the target as an upper bound. nearest (#24
# review F0/F6): the count nearest the target among neighbours of an affine guess (LoRA/adapter: plus_one
# guessed from the first module's size, so not the nearest where target modules differ in size; DePT: r0 - 1
# .. r0 + 1 at the configured pairing). global (the default; #24 review round 2, G0/G2): the count nearest the
# target over every value the knobs take (LoRA/adapter: (width, plus_one) in order is one increasing sequence
# of counts, bisected exactly; DePT: every r with its nearest m).
RULES = {
    "below": "#24's first solver: LoRA/adapter width from below, selective_module at most the target",
    "nearest": "the nearest among neighbours of an affine guess (#24 review round 1)",
    "global": "the count nearest the target over every value the knobs take (default)",
}
OLD_RULE = "below"  # what a config without the key (a record from before it) was solved by
# the strategies (PETMethod.budget_strategy) and the rules whose choice differs from the rule before it:
# a rule not named chooses as the one before it does (identity hashes the oldest rule that chooses alike)
STRATEGIES = {
    "width_plus_one": ("nearest", "global"),
    "length": (),
    "rank_and_length": ("global",),
    "bound": ("nearest",),
    "apet_scale": (),  # folded into apet.scale before any solving
}


def method_class(name: str):
    from petsweep.methods import METHODS

    return METHODS.get(name)


def canonical_rule(name: str, rule: str) -> str:
    """The oldest rule that solves method `name` by the same algorithm as `rule`."""
    order = list(RULES)
    changes = STRATEGIES.get(method_class(name).budget_strategy, ())
    at = order.index(rule)
    while at > 0 and order[at] not in changes:
        at -= 1
    return order[at]


def identifying_rule(name: str, rule: str, knobs_under) -> str | None:
    """The budget_rule a run's id hashes: the oldest rule (RULES' order, up to `rule`) that chooses the same
    knobs as `rule` (`knobs_under(r)`: the knobs rule r chooses; a rule that refuses chooses nothing); None
    where it is OLD_RULE (identity.ADDED_DEFAULTS). So runs that rules size alike keep one id, and a record
    re-identifies as what it computed whichever rule it names."""
    rule = canonical_rule(name, rule)
    chosen = knobs_under(rule)
    for older in list(RULES)[: list(RULES).index(rule)]:
        if canonical_rule(name, older) != older:
            continue
        try:
            if knobs_under(older) == chosen:
                rule = older
                break
        except ConfigError:  # that rule refused this budget
            continue
    return None if rule == OLD_RULE else rule


class _Knobs(Mapping):
    """The methods that `budget=` sizes and their knobs (PETMethod.budget_knobs), read from the methods."""

    def _all(self) -> dict:
        from petsweep.methods import METHODS

        return {n: METHODS.get(n).budget_knobs for n in METHODS.names() if METHODS.get(n).budget_strategy}

    def __getitem__(self, name):
        return self._all()[name]

    def __iter__(self):
        return iter(self._all())

    def __len__(self):
        return len(self._all())


KNOBS = _Knobs()


@dataclass
class BudgetChoice:
    """What a budget resolved to: result.json `budget` and `petsweep plan` show it."""

    requested: object  # the value of `budget` as given
    target: int  # the count it names on this backbone
    achieved: int  # the method's exact count with `knobs`
    knobs: dict  # the chosen knob values (method keys)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ratio": round(self.achieved / self.target, 4)}

    def short(self) -> str:
        knobs = ",".join(f"{k}={v}" for k, v in self.knobs.items())
        return f"budget={self.requested}: {self.achieved:,}/{self.target:,} ({knobs or 'as is'})"


def check_value(value) -> None:
    from petsweep.methods import METHODS

    names = [n for n in METHODS.names() if METHODS.get(n).names_a_budget]
    if isinstance(value, bool) or not (
        (isinstance(value, int) and value > 0) or (isinstance(value, str) and value in names)
    ):
        raise ConfigError(
            "budget",
            value,
            f"give a positive integer or a method whose count is the target: {', '.join(names)}",
        )


def fold_apet(data: dict) -> dict:
    """`method=apet budget=X` is `method=apet apet.scale=X`: a copy of the plain config with it folded."""
    value = data.get("budget")
    name = (data.get("method") or {}).get("name")
    if value is None or name is None or method_class(name).budget_strategy != "apet_scale":
        return data
    if value != "ratio":
        check_value(value)
    apet = dict(data.get("apet") or {})
    apet["scale"] = value  # budget wins: method=apet selects apet.scale=lora by default
    folded = {k: v for k, v in data.items() if k != "budget"}
    folded["apet"] = apet
    return folded


def target_count(value, spec) -> int:
    """The count `budget` names on the run's backbone (an integer as it is)."""
    from petsweep.methods import METHODS
    from petsweep.methods.base import build_method
    from petsweep.model.params import check_on_meta

    check_value(value)
    if isinstance(value, int):
        return value
    node = {"name": value, **METHODS.get(value).budget_keys}  # BitFit: with OpenDelta's added biases
    reference = dataclasses.replace(spec, method=build_method(node), config={})
    return check_on_meta(reference).pet_params


def check_rule(rule) -> None:
    if rule not in RULES:
        raise ConfigError(
            "budget_rule", rule, "choose one of: " + "; ".join(f"{k} ({v})" for k, v in RULES.items())
        )


def solve(value, spec, rule: str = "nearest", without_rule: bool = False):
    """Size spec.method's knob to `budget=value` by `rule` (RULES): returns (the method to run, its
    BudgetChoice). The choice is memoised per (meta_key, value, rule): a pure function of them.
    `without_rule`: the config has no budget_rule key (a record from before it; rule is OLD_RULE), so its
    knobs may also be those of a solver replaced in place since (_first_solved)."""
    check_rule(rule)
    check_value(value)  # before the memo, whose key would take True for 1
    solved = _solved(meta_key(spec), value, rule)
    choice = dataclasses.replace(solved, knobs=dict(solved.knobs))  # a copy: the caller may change it
    if without_rule:
        choice = _first_solved(spec, choice)
    _check_given(spec.method.config, choice, rule)
    return _with(spec, choice.knobs).method, choice


@functools.lru_cache(maxsize=1024)
def _solved(key: MetaKey, value, rule: str) -> BudgetChoice:
    """solve's choice for every run with this key (a refusal raises each time: it is not kept)."""
    spec = key.spec
    name = spec.method.config.name
    strategy = method_class(name).budget_strategy
    target = target_count(value, spec)
    if strategy is None:
        own = _count(spec, {})
        if own != target:
            raise ConfigError(
                "budget",
                value,
                f"method {name} has no size knob and its own count {own:,} is not the target {target:,}; "
                f"methods that take a budget: {', '.join(sorted(KNOBS))}",
            )
        return BudgetChoice(value, target, own, {})
    try:
        knobs = _recorded(spec, _SOLVERS[strategy](spec, target, canonical_rule(name, rule)), target, rule)
        achieved = _count(spec, knobs)
    except ConfigError as err:  # a knob value the backbone cannot take (a prompt past its positions)
        raise ConfigError(
            "budget",
            value,
            f"method {name} cannot reach the target {target:,} on backbone {spec.backbone.name}: "
            f"{err.key}={err.value}: {err.expected}",
        ) from None
    if abs(achieved - target) > TOLERANCE * target:
        raise ConfigError(
            "budget",
            value,
            f"method {name} comes no closer than {achieved:,} to the target {target:,} on backbone "
            f"{spec.backbone.name} ({_knob_text(knobs)}; tolerance {TOLERANCE:.0%})",
        )
    return BudgetChoice(value, target, achieved, knobs)


def _recorded(spec, knobs: dict, target: int, rule: str) -> dict:
    """A recorded config re-resolves to what it computed: its config.yaml holds the chosen knob values, and
    a solver that reads a knob (DePT starts from the configured m) may choose otherwise from them (gpt2
    budget=bitfit: (65, 63) from the YAML's m, (66, 62) from m = 65). Where the config's knobs are not the
    choice, the choice from the method's defaults is taken if it is the config's knobs (a knob given beside
    budget= is refused by _check_given as before)."""
    config = spec.method.config
    given = {k: getattr(config, k) for k in knobs}
    if given == knobs:
        return knobs
    name = config.name
    solver = _SOLVERS[method_class(name).budget_strategy]
    again = solver(_from_defaults(spec), target, canonical_rule(name, rule))
    return again if again == given else knobs


def _from_defaults(spec):
    """spec with the method's budget knobs at its defaults (its Config's, which the method YAML holds)."""
    config = spec.method.config
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    reset = {k: defaults[k] for k in method_class(config.name).budget_knobs if k in defaults}
    return dataclasses.replace(spec, method=_with(spec, reset).method)


def _first_solved(spec, choice: BudgetChoice) -> BudgetChoice:
    """The choice of a config without budget_rule (a record from before the key): `choice` (OLD_RULE's), or
    the config's own knobs where they are what the strategy's first solver chose (_FIRST_SOLVERS: a solver
    that OLD_RULE's replaced in place, before rules had names), from the config's knobs or the method's
    defaults as _recorded tries. Such a record hashes no rule, as OLD_RULE's records do, so it re-identifies
    as what it computed (R review F4: DePT budget=bitfit on minilm-l1 recorded (m 10, r 2) before 31d3fc9,
    OLD_RULE chooses (11, 1)). Only a config without the key asks: every composed config has one."""
    config = spec.method.config
    first = _FIRST_SOLVERS.get(method_class(config.name).budget_strategy)
    given = {k: getattr(config, k) for k in choice.knobs}
    if first is None or given == choice.knobs:
        return choice
    for start in (spec, _from_defaults(spec)):
        try:
            if first(start, choice.target) == given:
                return BudgetChoice(choice.requested, choice.target, _count(spec, given), given)
        except ConfigError:  # the first solver refused from here: not what the record ran
            continue
    return choice


def _check_given(config, choice: BudgetChoice, rule: str) -> None:
    """A knob given beside `budget=` was silently replaced (#24 review F7: `method=lora budget=bitfit
    method.r=5` ran r=3): refused in one line. Given means: a value other than the method's default (its
    Config's, which the method YAML holds) and other than what the budget chose (a run's config.yaml holds
    the chosen values, so a recorded config re-resolves). A value equal to the default cannot be told from
    the composed config and is replaced as before. Under budget_rule=global the knobs the older rules read
    as a start (PETMethod.budget_reads) only break ties, so they count as replaced."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    method = method_class(config.name)
    reads = method.budget_reads if canonical_rule(config.name, rule) == "global" else ()
    for knob in (*method.budget_replaces, *reads):
        value = getattr(config, knob)
        if value != defaults[knob] and value != choice.knobs.get(knob, defaults[knob]):
            chose = f" (it chose {_knob_text(choice.knobs)})" if choice.knobs else ""
            raise ConfigError(
                f"method.{knob}",
                value,
                f"and budget={choice.requested!r} both size {config.name}; give one{chose}",
            )


def _knob_text(knobs: dict) -> str:
    return ", ".join(f"method.{k}={v}" for k, v in knobs.items())


def _with(spec, knobs: dict):
    from petsweep.methods.base import build_method

    node = {**vars(spec.method.config), **knobs}
    for key in method_class(spec.method.config.name).budget_clears:
        node[key] = None
    return dataclasses.replace(spec, method=build_method(node))


def _count(spec, knobs: dict) -> int:
    """The method's exact meta-device count at `knobs`, memoised per (meta_key, knobs): the solver of every
    ladder budget of a threshold search counts the same few knob values again."""
    return _counted(meta_key(spec), tuple(sorted(knobs.items())))


@functools.lru_cache(maxsize=8192)
def _counted(key: MetaKey, knobs: tuple) -> int:
    from petsweep.model.params import check_on_meta

    return check_on_meta(_with(key.spec, dict(knobs))).pet_params


def _nearest_int(
    spec, knob: str, target: int, fixed: dict | None = None, low: int = 1, high: int | None = None
) -> dict:
    """The value of one integer knob in [low, high] whose count is nearest the target. Counts are affine in
    these knobs (rank, bottleneck, length), so two counts give the slope; the neighbours are counted too."""
    fixed = dict(fixed or {})
    c1 = _count(spec, {**fixed, knob: low})
    c2 = _count(spec, {**fixed, knob: low + 1})
    slope = c2 - c1
    guess = low if slope <= 0 else max(low, low + round((target - c1) / slope))
    if high is not None:
        guess = min(guess, high)
    candidates = sorted({min(max(low, guess + d), high or guess + 1) for d in (-1, 0, 1)})
    counted = {}
    for value in candidates:
        try:
            counted[value] = _count(spec, {**fixed, knob: value})
        except ConfigError:  # past what the model takes (more prompt vectors than positions, ...)
            continue
    if not counted:
        _count(spec, {**fixed, knob: candidates[0]})  # raises the model's own line
    best = min(counted, key=lambda v: (abs(counted[v] - target), v))
    return {**fixed, knob: best}


def _width_cap(spec, knob: str) -> int | None:
    """The largest meaningful value of a width knob (LoRA r, adapter bottleneck): the smallest width its
    matrices pair with (LoRA: min(d_in, d_out) over its targets; adapter: the narrowest hidden width), past
    which a wider one adds nothing. Attached on the meta device at knob=1, each of the method's trained
    matrices is (1, d) or (d, 1); the cap is the smallest such d (None: no such matrix)."""
    widths = _thin_widths(spec, knob)
    return min(widths) if widths else None


# what a model without absolute positions (T5's relative position bias) takes in all: T5's pretraining input
# length (its tokenizers' model_max_length); a longer prompt is one the model never saw positions of
RELATIVE_POSITIONS = 512


def _length_cap(spec) -> int:
    """The largest prompt or prefix length (prompt, prefix, DePT's m) the solver may choose: what the model's
    positions leave beside the task's input (prompt.check_positions refuses more), for every family; a model
    without absolute positions (T5) counts RELATIVE_POSITIONS. At least 1: a task that fills the positions
    is refused by the method's own line."""
    from petsweep.model.backbones import build_on_meta

    config = build_on_meta(spec.backbone, spec.task.num_labels or 2).config
    limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
    limit = next((v for v in limits if isinstance(v, int)), RELATIVE_POSITIONS)
    return max(1, limit - spec.task.max_length)


def _length(spec, target: int) -> dict:
    """Prompt or prefix length nearest the target, capped at _length_cap before anything is counted: a
    target past the cap's count is refused as out of reach (as LoRA's r at its width)."""
    return _nearest_int(spec, "length", target, high=_length_cap(spec))


def _plus_one(spec, knob: str, target: int, rule: str = "nearest") -> dict:
    """The uniform knob (LoRA r, adapter bottleneck) and how many modules get one more unit (plus_one). k is
    the widest uniform width whose count is at or below the target (1 at least); the candidates are k with
    the plus_one nearest the target and k + 1 with the plus_one nearest it (plus_one only adds, so k + 1 at
    plus_one 0 is the one count above k's fills); the one whose exact count is nearest the target is taken (a
    tie: the smaller count). rule=below (#24's first solver) takes k's candidate alone. The knob is capped at
    _width_cap before anything is counted: a target past the cap's count is refused as out of reach.
    rule=global: _plus_one_global (exact; the two above hold where the target modules have one size)."""
    if rule == "global":
        return _plus_one_global(spec, knob, target)
    cap = _width_cap(spec, knob)
    knobs = _nearest_int(spec, knob, target, {"plus_one": 0}, high=cap)
    if _count(spec, knobs) > target and knobs[knob] > 1:
        knobs[knob] -= 1
    width = knobs[knob]
    candidates = []
    for w in (width, width + 1) if rule == "nearest" else (width,):
        if cap is not None and w > cap:
            continue
        if cap is not None and w >= cap:
            choice = {knob: cap, "plus_one": 0}
        else:
            choice = _nearest_int(spec, "plus_one", target, {knob: w}, low=0)
        count = _count(spec, choice)
        candidates.append((abs(count - target), count, choice))
    return min(candidates, key=lambda c: c[:2])[2]


def _target_modules(spec, knob: str) -> int:
    """How many modules the width knob sizes (plus_one stays below it): attached on the meta device at
    knob=1, each has a (1, d) and a (d, 1) matrix (LoRA's A and B, an adapter's down and up)."""
    return max(1, len(_thin_widths(spec, knob)) // 2)


def _thin_widths(spec, knob: str) -> tuple[int, ...]:
    """d of each (1, d) or (d, 1) matrix the method trains, attached on the meta device at knob=1 (memoised
    per (meta_key, knob))."""
    return _thin(meta_key(spec), knob)


@functools.lru_cache(maxsize=256)
def _thin(key: MetaKey, knob: str) -> tuple[int, ...]:
    from petsweep.model.backbones import build_on_meta
    from petsweep.model.params import HEAD_GROUP, attach_method

    spec = key.spec
    one = _with(spec, {knob: 1, "plus_one": 0})
    attached, _ = attach_method(build_on_meta(spec.backbone, spec.task.num_labels or 2), one)
    return tuple(
        max(p.shape)
        for g in attached.groups
        if g.name != HEAD_GROUP
        for p in g.params
        if p.dim() == 2 and min(p.shape) == 1
    )


def _plus_one_global(spec, knob: str, target: int) -> dict:
    """The (width, plus_one) whose exact count is nearest the target over every value they take (#24 review
    round 2, G0). With n target modules, count(w, p) = w x (their sizes) + (the first p modules' sizes), so
    in the order (w, p) -> w n + p the counts increase (count(w, n) would be count(w + 1, 0)), whatever
    sizes the modules have: a bisection on that index finds the first count at or above the target, and the
    nearest is it or the one before (a tie: the smaller count). w runs from 1 to _width_cap (at the cap,
    plus_one 0)."""
    cap = _width_cap(spec, knob)
    n = _target_modules(spec, knob)

    def knobs(index: int) -> dict:
        return {knob: index // n, "plus_one": index % n}

    low = n  # (1, 0)
    if cap is not None:
        high = cap * n  # (cap, 0)
    else:  # no cap: double until past the target
        high = 2 * n
        while _count(spec, knobs(high)) < target:
            high *= 2
    if _count(spec, knobs(high)) < target:
        return knobs(high)
    if _count(spec, knobs(low)) >= target:
        return knobs(low)
    while high - low > 1:  # count(low) < target <= count(high)
        mid = (low + high) // 2
        if _count(spec, knobs(mid)) < target:
            low = mid
        else:
            high = mid
    above, below = _count(spec, knobs(high)), _count(spec, knobs(low))
    return knobs(high) if above - target < target - below else knobs(low)


def _dept(spec, target: int, rule: str = "nearest") -> dict:
    """DePT at a count. The paper keeps prompt tuning's count and trades prompt vectors (m) for rank (r); the
    solver starts where the configuration points: the configured m where it leaves room for rank 1 (else the
    largest m that does) and the r nearest the target for it (r0), r at most min(s, d) (s: task.max_length).
    The candidates are r0 - 1, r0 and r0 + 1 (within [1, min(s, d)]), each with the m nearest the target at
    that r; the one whose exact count is nearest the target is taken (a tie: the r nearer r0). So a cap that
    leaves r0 short of the target is made up by m, and a count between two of r0's is reached by trading one
    unit of r for the m that fits it. rule=global: _dept_global (every r)."""
    per_vector = _count(spec, {"length": 2, "rank": 1}) - _count(spec, {"length": 1, "rank": 1})  # d
    cap = min(spec.task.max_length, per_vector)
    rank_one = _count(spec, {"length": 1, "rank": 1}) - per_vector  # the count of rank 1 with no vectors
    m_cap = _length_cap(spec)
    m = min(spec.method.config.length, m_cap)
    if m * per_vector + rank_one > target:
        m = max(1, (target - rank_one) // max(per_vector, 1))
    r0 = _nearest_int(spec, "rank", target, {"length": m}, high=cap)["rank"]
    if rule == "global":
        return _dept_global(spec, target, m, r0, cap, m_cap)
    chosen, error = [], None
    for rank in sorted({max(1, min(cap, r0 + d)) for d in (-1, 0, 1)}):
        try:
            knobs = _nearest_int(spec, "length", target, {"rank": rank}, high=m_cap)
        except ConfigError as err:  # no m at this r fits the positions
            error = err
            continue
        knobs = {"length": knobs["length"], "rank": rank}
        chosen.append((abs(_count(spec, knobs) - target), abs(rank - r0), knobs))
    if not chosen:
        raise error
    return min(chosen, key=lambda c: c[:2])[2]


def _dept_first(spec, target: int) -> dict:
    """DePT's first solver (#24 part 1, 3daef6f .. 31d3fc9, kept as it was): the configured m where it leaves
    room for rank 1 (else the largest m that does), the r nearest the target for it (r at most min(s, d)),
    and m re-solved at that r only where the count is outside TOLERANCE. 31d3fc9 replaced it in place with
    _dept's neighbours, before budget_rule existed, so its records carry no rule (_first_solved)."""
    per_vector = _count(spec, {"length": 2, "rank": 1}) - _count(spec, {"length": 1, "rank": 1})  # d
    cap = min(spec.task.max_length, per_vector)
    rank_one = _count(spec, {"length": 1, "rank": 1}) - per_vector  # the count of rank 1 with no vectors
    m = spec.method.config.length
    if m * per_vector + rank_one > target:
        m = max(1, (target - rank_one) // max(per_vector, 1))
    knobs = _nearest_int(spec, "rank", target, {"length": m}, high=cap)
    if abs(_count(spec, knobs) - target) > TOLERANCE * target:
        knobs = _nearest_int(spec, "length", target, {"rank": knobs["rank"]})
    return knobs


def _dept_global(spec, target: int, m0: int, r0: int, r_cap: int, m_cap: int) -> dict:
    """DePT's (m, r) whose exact count is nearest the target over every r in [1, min(s, d)] and m in [1,
    m_cap] (#24 review round 2, G2). The count is affine in m and r (m d + r (s + d) + a constant), so three
    exact counts give it everywhere; each r's nearest m is computed, the best pairing counted exactly (and
    checked against the affine form). A tie goes to the pairing nearer the configured one (r nearer r0,
    then m nearer m0)."""
    base = _count(spec, {"length": 1, "rank": 1})
    per_m = _count(spec, {"length": 2, "rank": 1}) - base
    per_r = _count(spec, {"length": 1, "rank": 2}) - base if r_cap > 1 else 0

    def affine(m: int, r: int) -> int:
        return base + (m - 1) * per_m + (r - 1) * per_r

    best = None
    for r in range(1, r_cap + 1):
        guess = 1 + round((target - affine(1, r)) / per_m) if per_m > 0 else 1
        for m in {min(max(1, guess + d), m_cap) for d in (-1, 0, 1)}:
            key = (abs(affine(m, r) - target), abs(r - r0), abs(m - m0), r, m)
            best = key if best is None or key < best else best
    m, r = best[4], best[3]
    chosen = {"length": m, "rank": r}
    if _count(spec, chosen) != affine(m, r):  # not affine after all: the neighbours of the configured pairing
        return _dept(spec, target, "nearest")
    return chosen


def _selective(spec, target: int, rule: str = "nearest") -> dict:
    """selective_module's method.budget: modules are taken in a seeded order while they fit it, so its count
    is at most the knob. rule=below (#24's first solver) passes the target as the knob (the fill at or below
    it). nearest also looks above: the fill of target x (1 + TOLERANCE) and, where that passes the target, a
    bisection of the knob between the target and it for the smallest fill above the target (each knob value
    counted exactly); the nearest count is taken (a tie: the smaller count, then the knob = target)."""
    if rule != "nearest":
        return {"budget": target}
    counted, error = {}, None

    def count(bound: int) -> int | None:
        nonlocal error
        if bound not in counted:
            try:
                counted[bound] = _count(spec, {"budget": bound})
            except ConfigError as err:  # below the smallest module: the target's line (not the probe's)
                error, counted[bound] = error or err, None
        return counted[bound]

    count(target)
    low, high = target, target + int(TOLERANCE * target)
    if (count(high) or 0) > target:
        while high - low > 1:  # count(high) > target >= count(low), where the fill is monotone
            mid = (low + high) // 2
            if (count(mid) or 0) > target:
                high = mid
            else:
                low = mid
    found = [(abs(c - target), c, b != target, b) for b, c in counted.items() if c is not None]
    if not found:
        raise error
    return {"budget": min(found)[3]}


def _width_knob(spec) -> str:
    return next(k for k in method_class(spec.method.config.name).budget_knobs if k != "plus_one")


_SOLVERS = {
    "width_plus_one": lambda spec, t, rule: _plus_one(spec, _width_knob(spec), t, rule),
    "length": lambda spec, t, rule: _length(spec, t),
    "rank_and_length": _dept,
    "bound": _selective,
}
# a strategy's solver from before budget_rule that OLD_RULE's replaced in place: its records carry no rule
_FIRST_SOLVERS = {"rank_and_length": _dept_first}
