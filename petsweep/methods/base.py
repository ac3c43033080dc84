"""The contract every PET method fulfils; `build_method` finds a method through the registry (METHODS).

A method attaches to a model and returns the groups of parameters it trains, identified by object
(`Attached`); the framework (petsweep.model.params.attach_method) freezes everything else, adds the task head
as a group of its own, and counts parameters from the groups. Nothing reads trainability back from names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from petsweep.methods import METHODS  # the package holds it; each method registers there
from petsweep.spec.apet import Budget
from petsweep.spec.backbone import FAMILIES, BackboneSpec
from petsweep.spec.errors import ConfigError
from petsweep.spec.typecheck import check_types, plain

if TYPE_CHECKING:  # composing a config loads this module: no torch at import (only in functions)
    import torch
    from torch import nn


@dataclass
class MethodConfig:
    """Keys every method YAML may set; a method subclasses this with its own hyper-parameters.

    Attributes:
        name: registry key, equal to the YAML stem.
        lr: learning rate of the method's parameters (methods differ by orders of magnitude).
        train_head: whether a task head that petsweep adds (encoders) is trained beside the method.
        init_from: a finished run (directory or run id) whose trained weights this run starts from.
        adam_eps: AdamW's eps for the method's groups and the head (a method states its seed's: DePT's
            transformers.AdamW used 1e-6; torch's 1e-8 elsewhere).
    """

    name: str
    lr: float = 1e-3
    train_head: bool = True
    init_from: str | None = None
    adam_eps: float = 1e-8

    def __post_init__(self):
        if not self.lr > 0:
            raise ConfigError("method.lr", self.lr, "the learning rate must be positive")
        if not self.adam_eps > 0:
            raise ConfigError("method.adam_eps", self.adam_eps, "AdamW's eps must be positive")


@dataclass
class ParamGroup:
    """Parameters trained together at one learning rate, named stably (optimizer groups carry the name)."""

    name: str
    params: list[nn.Parameter]
    lr: float
    eps: float = 1e-8  # AdamW's eps (the method's adam_eps)


@dataclass
class AttachContext:
    """What a method is told about the model it attaches to.

    Attributes:
        backbone: the backbone's spec (family, module map, ...).
        head: the parameters of the task head petsweep added (encoders), resolved by object before the
            method runs, so a method that wraps or renames the model cannot lose or copy it. Methods never
            train these; the framework adds them as the `head` group when `train_head` is set.
        task: the run's task spec (lengths, kind), where a method's fit depends on it.
        tokenizer: the backbone's tokenizer, for methods initialised from text (None on the meta device).
        training: False where saved weights are attached to be scored, exported or transferred (a method
            whose saved form differs from its training form, OPF's dense matrices, attaches that form).
        importance: where the run has training data, (model, round, {name: matrix}) -> {name: score}, the
            gradient importance of matrices (petsweep/train/importance.py); None on the meta device.
        apet: the run's `apet` group resolved (RunSpec.apet: its spec and K on this backbone); None where the
            group is off. APET's budget comes from here, not from a value set on the method after it was
            built (#23).
    """

    backbone: BackboneSpec
    head: list[nn.Parameter] = field(default_factory=list)
    task: Any = None  # the run's TaskSpec (lengths, kind), where a method's fit depends on it
    tokenizer: Any = None  # the backbone's tokenizer on a real model (text initialisation); None on meta
    training: bool = True
    importance: Callable | None = None
    apet: Budget | None = None

    def is_head(self, param: nn.Parameter) -> bool:
        return any(param is p for p in self.head)


@dataclass
class Attached:
    """A method on a model: the model to run (it may wrap the backbone) and the groups it trains.

    The groups are the only source of trainability: the framework freezes every other parameter.
    """

    model: nn.Module
    groups: list[ParamGroup]
    notes: list[str] = field(default_factory=list)  # e.g. a target widened to a fused projection
    # weight-dependent set-up (copying embeddings, SVD, sampling positions): run by the framework, in order
    # and without gradients, once the method is attached to a real model; never on the meta device
    setup: list[Callable[[], None]] = field(default_factory=list)
    # state beside the trained parameters (sampled positions, a selection), registered as module buffers so it
    # moves with the model: saved in checkpoints and pet_weights, loaded back with them
    buffers: list[torch.Tensor] = field(default_factory=list)


class PETMethod:
    """Base class: attach a method to a pretrained model and say, by object, which parameters it trains.

    Subclasses set `Config` (and `families` if not every family can take them) and implement `attach`.
    `attach` must work on the meta device (that is how counts are made) and must not train the task head;
    what needs the pretrained weights goes in `Attached.setup`.
    """

    Config: type[MethodConfig] = MethodConfig
    families: tuple[str, ...] = FAMILIES
    # attach works on a backbone whose weights ZeRO-3 has already partitioned (it reads no weight's shape or
    # values): such runs load the backbone straight into its shards; the others load it whole first
    attaches_to_partitions: bool = False

    def __init__(self, config: MethodConfig):
        self.config = config

    def check(self, backbone: BackboneSpec) -> None:
        """Refuse a backbone this method cannot take, with one line (called when a run is validated)."""
        if backbone.family not in self.families:
            raise ConfigError(
                "method",
                self.config.name,
                f"supports {', '.join(self.families)} backbones; {backbone.name} is {backbone.family}",
            )

    def attach(self, model: nn.Module, ctx: AttachContext) -> Attached:
        raise NotImplementedError

    def stage_steps(self, max_steps: int) -> list[int]:
        """Steps of each training stage (a new optimizer per stage); one stage, the whole run, by default.
        Called when the run is validated, so a stage without steps is refused before anything starts."""
        return [max_steps]

    def attach_stage(self, model: nn.Module, ctx: AttachContext, stage: int) -> Attached:
        """What stage `stage` adds to the model and trains. `attach` is every stage at once (counts);
        a run attaches stage 0 before training and each later stage when it begins."""
        if stage != 0:
            raise ValueError(f"{self.config.name} trains in one stage")
        return self.attach(model, ctx)

    # trains more parameters than the backbone has (OPF's MPO tensors): counts may exceed the backbone's
    overparameterises: bool = False
    # whether each stage restarts warmup and decay (sequential: a new task per stage) or continues the run's
    # one schedule (OPF's dynamic rounds)
    restarts_schedule: bool = True
    # whether a later stage's optimizer keeps the state (moments, step counts) of parameters that train on
    keeps_optimizer_state: bool = False
    # trains fused with other runs on one frozen backbone (petsweep/train/fused.py carries each member's own
    # modules on its rows; petsweep/run/fusable.py's rule): LoRA, BitFit, LN tuning
    fuses: bool = False
    # its exact count on a backbone may name a budget (budget=<name>, apet.scale=<name>): not a method that
    # sizes itself from a budget (APET), composes others, trains everything or trains no parameter of its own
    names_a_budget: bool = True
    # the keys it is counted with where it names a budget (BitFit: OpenDelta's added biases, as the APET
    # table counts bias-free backbones)
    budget_keys: dict[str, Any] = {}
    # how `budget=` sizes it (petsweep/model/budget.py): the integer knobs the solver sets and its strategy,
    # one of budget.STRATEGIES ("width_plus_one": a uniform width and how many modules get one unit more,
    # "length": prompt vectors, "rank_and_length": DePT's m and r, "bound": an upper bound the method fills,
    # "apet_scale": folded into apet.scale, the top-level `apet` group, which is on for such a method and
    # only for it: resolve.check_apet_group); no strategy: it takes a budget only where its own count is it
    budget_knobs: tuple[str, ...] = ()
    budget_strategy: str | None = None
    # the knobs whose given value `budget=` replaces without reading it (one given beside budget= is
    # refused in one line), and the keys it clears (selective_module's fraction: the bound sizes the fill)
    budget_replaces: tuple[str, ...] = ()
    budget_clears: tuple[str, ...] = ()
    # knobs the older rules (nearest, below) start from but budget_rule=global only breaks ties with: a value
    # given beside budget= is refused under global, as a replaced one is (DePT's m; #24 review round 3, H3)
    budget_reads: tuple[str, ...] = ()
    # the task head is the method's own parameters (method=head): its lr is the head's, and train_head=false
    # trains nothing at all
    is_the_head: bool = False

    @classmethod
    def trains_alone(cls, values: dict) -> str | None:
        """Why a run of this method (one that `fuses`) with these `method` keys trains alone after all (one
        line), or None."""
        return None

    def record_fields(self) -> dict[str, Any]:
        """What the method adds to result.json (RunRecord fields: APET's positions, OPF's choice)."""
        return {}

    def importance_batches(self) -> int | None:
        """Batches of the gradient-importance pass over the training data where the method scores matrices by
        it (AttachContext.importance: OPF); None: one pass over the training data."""
        return None

    def saved_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The form trained weights are saved in (pet_weights): as trained by default; OPF contracts its MPO
        tensors back into dense matrices. Loading them attaches the method with `training=False`."""
        return state

    # its backward computes a gradient for every backbone weight (full fine-tuning): a plan's FLOP estimate
    # counts 6 x params per trained token for it, 4 (no weight gradients) for others (launchers/costing.py)
    trains_every_weight: bool = False

    # `petsweep export --format peft` (petsweep/run/export.py): why the method has no peft adapter form (one
    # line), or None where it has one (`peft_config` builds it); `peft_rank` orders the forms where a refusal
    # lists them
    no_peft_form: str | None = "peft has no such tuner"
    peft_rank: int = 0

    def peft_refusal(self, exports: str) -> ConfigError | None:
        """Why this run of a method with a peft form has none after all (a setting peft has no place for), as
        a one-line error naming `exports` (which methods export), or None."""
        return None

    def peft_config(self, tuned: nn.Module, saved: dict, head_modules: list[str], common: dict):
        """The peft config of this run's method, for peft's model class of the backbone's family. `tuned`:
        the run's model, trained weights loaded; `saved`: its pet_weights; `common`: the export's task_type
        and modules_to_save (the task head's modules, `head_modules`)."""
        raise NotImplementedError(f"{self.config.name} has no peft form")

    def fill_peft(self, peft_model: nn.Module, tuned: nn.Module, saved: dict) -> set[str]:
        """Copy into peft's model (under no_grad) the trained tensors peft keeps elsewhere than under their
        names in the run (a prompt encoder); returns the saved keys copied. The rest are copied by name."""
        return set()

    def peft_extra_positions(self, family: str) -> int:
        """Output positions peft's model puts in front of the run's (peft's causal LM returns a prompt's)."""
        return 0

    def merge_for_export(self, model: nn.Module) -> None:
        """Fold into the backbone's weights what the generic merge (peft tuner layers, parametrizations) does
        not see, for `petsweep export` (APET's sampled deltas); nothing by default."""

    def group(self, params, name: str = "method", lr: float | None = None) -> ParamGroup:
        """One group of the method's parameters at its learning rate (or `lr`)."""
        lr = self.config.lr if lr is None else lr
        return ParamGroup(name=name, params=list(params), lr=lr, eps=self.config.adam_eps)


def on_meta(model: nn.Module) -> bool:
    """Whether `model` is a meta-device copy (counting): no weights to read, score or decompose."""
    return any(p.device.type == "meta" for p in model.parameters())


def backbone_params(model: nn.Module, ctx: AttachContext) -> list[tuple[str, nn.Parameter]]:
    """The model's parameters other than the task head, with their names, in the model's order."""
    return [(n, p) for n, p in model.named_parameters() if not ctx.is_head(p)]


def target_modules(model: nn.Module, ctx: AttachContext, names: list[str], key: str):
    """The modules the canonical `names` pick on this model: (peft regex, [(name, module)], notes).

    A name that matches no module of the model is an error (peft would silently ignore it).
    """
    import re

    regex, notes = ctx.backbone.targets(list(names), key)
    arch = ctx.backbone.module_map()
    for name in names:
        pattern = re.compile(arch.modules[arch.fused.get(name, name)])
        if not any(pattern.fullmatch(n) for n, _ in model.named_modules()):
            raise ConfigError(
                key, name, f"matches no module of {ctx.backbone.name} (pattern {pattern.pattern!r})"
            )
    compiled = re.compile(regex)
    found = [(n, m) for n, m in model.named_modules() if compiled.fullmatch(n)]
    return regex, found, notes


def new_params(model: nn.Module, before: set[int]) -> list[nn.Parameter]:
    """Parameters that did not exist when `before` (ids) was taken: what an injected module added."""
    return [p for p in model.parameters() if id(p) not in before]


def inject_peft(model: nn.Module, peft_config) -> tuple[nn.Module, list[nn.Parameter]]:
    """peft's `inject_adapter_in_model`, which keeps the model's own class (generate, base_model, ...) and its
    parameter objects; returns the model and the parameters the adapter added (what the method trains)."""
    from peft import inject_adapter_in_model

    before = {id(p) for p in model.parameters()}
    model = inject_adapter_in_model(peft_config, model)
    return model, new_params(model, before)


def injected_peft_config(tuned: nn.Module, common: dict):
    """The peft config a method injected with peft's own tuner (LoRA, IA3), as an export writes it: with the
    export's task type and head, for training (not inference mode)."""
    import copy

    config = copy.deepcopy(tuned.peft_config["default"])
    config.task_type, config.modules_to_save = common["task_type"], common["modules_to_save"]
    config.inference_mode = False
    return config


def field_help(cls: type[MethodConfig]) -> dict[str, str]:
    """Each field's help: its entry under "Attributes:" in the docstring of the class that declares it."""
    import inspect
    import re

    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = inspect.getdoc(klass) if "__doc__" in vars(klass) else None
        section = (doc or "").partition("Attributes:")[2]
        for name, text in re.findall(r"^    (\w+): (.*(?:\n        .*)*)", section, flags=re.M):
            found[name] = " ".join(text.split())
    return {f.name: found.get(f.name, "") for f in dataclasses.fields(cls)}


def build_method(node: dict) -> PETMethod:
    """Validate a composed `method` node (plain data: typecheck.plain converts a DictConfig given) against its
    method's dataclass and build the method."""
    values = dict(plain(node))
    cls = METHODS.get(values.get("name"), key="method")
    known = {f.name for f in dataclasses.fields(cls.Config)}
    for key in values:
        if key not in known:
            raise ConfigError(
                f"method.{key}", values[key], f"not a {values['name']} key; valid: {', '.join(sorted(known))}"
            )
    check_types(cls.Config, values, "method")
    return cls(cls.Config(**values))
