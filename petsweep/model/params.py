"""Parameter accounting: a first-class part of every result, the same on real and meta-device models.

- total_params: the backbone's unique parameters as published (tied weights once; petsweep's task head not
  included), counted before the method adds anything.
- pet_params: parameters the method trains (new modules, or the backbone subset it unfreezes).
- trainable_params: everything the optimizer updates: pet_params plus a trained task head.

All three come from the parameter groups a method returns (by object), never from names or requires_grad.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import asdict, dataclass, field

from torch import nn

from petsweep.methods.base import AttachContext, Attached, ParamGroup, on_meta
from petsweep.model.memo import MetaKey, meta_key
from petsweep.spec.errors import ConfigError


@dataclass
class ParamCounts:
    total_params: int
    nonembedding_params: int
    head_params: int
    pet_params: int = 0
    trainable_params: int = 0
    count_notes: list[str] = field(default_factory=list)  # what a method says of its count (DePT: s)

    def as_dict(self) -> dict:
        return asdict(self)


HEAD_GROUP = "head"  # the name of the task head's parameter group (trained by every method)


def method_tensors(model: nn.Module) -> dict:
    """The model's buffers and parameters by name: what a method's state is made of (a checkpoint's and
    init_from's tensors)."""
    return {**dict(model.named_buffers()), **dict(model.named_parameters())}


def count_backbone(model: nn.Module, head: list[nn.Parameter]) -> ParamCounts:
    """Counts of the untouched model (before the method attaches); `head`: the task head's parameters."""
    params = list(model.parameters())  # parameters() lists a tied weight once
    embedding = model.get_input_embeddings()
    embedding_numel = embedding.weight.numel() if embedding is not None else 0
    head_numel = sum(p.numel() for p in head)
    total = sum(p.numel() for p in params) - head_numel
    return ParamCounts(
        total_params=total, nonembedding_params=total - embedding_numel, head_params=head_numel
    )


def check_on_meta(spec) -> ParamCounts:
    """Attach the run's method to its backbone on the meta device (no weights, nothing written) and return the
    counts: a method the backbone cannot take, or a target that matches nothing, fails here with one line,
    before a run dir is claimed or a weight is looked for. Memoised per model.memo.meta_key (the backbone,
    the method but its optimizer settings, the apet group, the task's shape), so a sweep of learning rates
    builds each model once (#25); the counts are a copy, which a caller may change."""
    counts = _counted_on_meta(meta_key(spec))
    return dataclasses.replace(counts, count_notes=list(counts.count_notes))


@functools.lru_cache(maxsize=1024)
def _counted_on_meta(key: MetaKey) -> ParamCounts:
    """check_on_meta's counts of every run with this key (a pure function of it: model/memo.py)."""
    from petsweep.model.backbones import build_on_meta

    spec = key.spec
    return attach_method(build_on_meta(spec.backbone, spec.task.num_labels or 2), spec)[1]


def _check_disjoint(groups) -> None:
    seen: dict[int, str] = {}
    for group in groups:
        for param in group.params:
            if id(param) in seen:
                raise ConfigError(
                    "method", group.name, f"trains a parameter of group {seen[id(param)]!r} too"
                )
            seen[id(param)] = group.name


def attach_method(
    model: nn.Module, spec, stage: int | None = None, tokenizer=None, training: bool = True, importance=None
) -> tuple[Attached, ParamCounts]:
    """Attach the run's PET method, set trainability from its groups (plus the head's), and count.

    The task head is resolved by object before the method runs; every parameter outside the returned groups
    is frozen.

    Args:
        model: the backbone with its task head, real or on the meta device.
        spec: the validated run (petsweep.spec.config.RunSpec).
        stage: attach only this stage of a method that trains in stages (a run attaches stage 0, then
            `begin_stage`); None attaches every stage (counts, evaluation).
        tokenizer: the backbone's tokenizer (methods initialised from text need it on a real model).
        training, importance: as in AttachContext (False: saved weights are attached to be evaluated).

    Returns:
        (the attached model and its groups, the head's group last; the ParamCounts of what was attached).
    """
    head = _head(model, spec.backbone)
    counts = count_backbone(model, head)
    for param in model.parameters():
        param.requires_grad_(False)
    ctx = AttachContext(spec.backbone, head, spec.task, tokenizer, training, importance, spec.apet)
    method = spec.method
    attached = method.attach(model, ctx) if stage is None else method.attach_stage(model, ctx, stage)
    run_setup(attached)
    counts.pet_params = sum(p.numel() for g in attached.groups for p in g.params)
    if head and spec.method.config.train_head:
        attached.groups.append(ParamGroup(HEAD_GROUP, head, head_lr(spec), spec.method.config.adam_eps))
    _set_trainable(attached.groups)
    counts.trainable_params = sum(p.numel() for g in attached.groups for p in g.params)
    counts.count_notes = list(attached.notes)
    return attached, counts


def begin_stage(
    attached: Attached, spec, stage: int, tokenizer=None, importance=None
) -> tuple[list[ParamGroup], list]:
    """Start stage `stage` of a method that trains in stages: attach what the stage adds, freeze what was
    trained so far and is not in the stage's groups (a head keeps training); returns the groups it trains and
    the buffers it adds. A stage's group replaces an earlier group of the same name (OPF lists its dense and
    MPO tensors anew each round); sequential's stages add groups of their own.

    The stage's initialisation is drawn from a generator seeded by (run seed, stage) and leaves the global
    RNG alone, so a run resumed inside any stage re-creates it exactly.
    """
    import torch

    head = _head(attached.model, spec.backbone)
    head_groups = [g for g in attached.groups if g.name == HEAD_GROUP]
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed * 1009 + stage)
        ctx = AttachContext(spec.backbone, head, spec.task, tokenizer, importance=importance, apet=spec.apet)
        added = spec.method.attach_stage(attached.model, ctx, stage)
        run_setup(added)
    groups = added.groups + head_groups
    renewed = {g.name for g in added.groups}
    kept = [g for g in attached.groups if g.name != HEAD_GROUP and g.name not in renewed]
    for group in [*kept, *(g for g in attached.groups if g.name in renewed)]:
        for param in group.params:
            param.requires_grad_(False)
    _check_disjoint([*kept, *added.groups])
    _set_trainable(groups)
    attached.groups = [*kept, *added.groups, *head_groups]
    attached.buffers += added.buffers
    return groups, added.buffers


def head_lr(spec) -> float:
    """The task head's learning rate: trainer.head_lr (one value for every method, so method comparisons do
    not compare head learning rates), or the method's lr where it is null (runs before #26) or where the head
    is the method itself (method=head: its lr is the head's)."""
    if spec.trainer.head_lr is None or spec.method.is_the_head:
        return spec.method.config.lr
    return spec.trainer.head_lr


def _head(model: nn.Module, backbone) -> list[nn.Parameter]:
    """The task head's parameters, by object (resolved once, before a method can wrap or rename anything)."""
    from petsweep.model.backbones import head_parameter_names

    names = head_parameter_names(model, backbone)
    return [p for n, p in model.named_parameters() if n in names]


def run_setup(attached: Attached) -> None:
    """The method's weight-dependent set-up, on a real model only (a meta model has no weights to read)."""
    import torch

    if on_meta(attached.model):
        return
    with torch.no_grad():
        for step in attached.setup:
            step()


def _set_trainable(groups: list[ParamGroup]) -> None:
    _check_disjoint(groups)
    for group in groups:
        for param in group.params:
            param.requires_grad_(True)
