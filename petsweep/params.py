"""Parameter accounting: a first-class part of every result, the same on real and meta-device models.

- total_params: the backbone's unique parameters as published (tied weights once; petsweep's task head not
  included), counted before the method adds anything.
- pet_params: parameters the method trains (new modules, or the backbone subset it unfreezes).
- trainable_params: everything the optimizer updates: pet_params plus a trained task head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn


@dataclass
class ParamCounts:
    total_params: int
    nonembedding_params: int
    head_params: int
    pet_params: int = 0
    trainable_params: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def count_backbone(model: nn.Module, head_names: set[str]) -> ParamCounts:
    """Counts of the untouched model (call before the method is applied)."""
    params = dict(model.named_parameters())  # named_parameters() already lists a tied weight once
    embedding = model.get_input_embeddings()
    embedding_numel = embedding.weight.numel() if embedding is not None else 0
    head = sum(p.numel() for n, p in params.items() if n in head_names)
    total = sum(p.numel() for p in params.values()) - head
    return ParamCounts(total_params=total, nonembedding_params=total - embedding_numel, head_params=head)


def count_trainable(model: nn.Module, head_names: set[str], counts: ParamCounts) -> ParamCounts:
    """Fill pet_params and trainable_params from `requires_grad` after the method (and head) are set."""
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    counts.trainable_params = sum(trainable.values())
    counts.pet_params = sum(v for n, v in trainable.items() if n not in head_names)
    return counts


def apply_method(model: nn.Module, spec) -> tuple[nn.Module, set[str], ParamCounts]:
    """Apply the run's PET method and set the task head's trainability; count before and after.

    Args:
        model: the backbone with its task head, real or on the meta device.
        spec: the validated run (petsweep.config.RunSpec).

    Returns:
        (the model to train, names of the head's parameters, the filled ParamCounts).
    """
    from petsweep.backbones import head_parameter_names

    head_names = head_parameter_names(model, spec.backbone)
    counts = count_backbone(model, head_names)
    model = spec.method.apply(model, spec.backbone)
    for name, param in model.named_parameters():
        if name in head_names:
            param.requires_grad_(spec.method.config.train_head)
    return model, head_names, count_trainable(model, head_names, counts)
