"""Gradient importance of weight matrices: mean squared gradient over a pass of the training data.

What OPF selects matrices by (the ChildTuning-D score of the seed code): in train mode, no optimizer step,
each batch's gradient of every scored matrix clipped to `max_grad_norm` and its mean square accumulated.

Scores are kept per round in the run's `importance.json`. A method that scores again after training has
moved the weights (OPF's dynamic rounds) is re-attached on resume before its checkpoint is restored, when
the weights are not yet the ones that were scored: it reads the round's saved scores instead, so a resumed
run selects what the uninterrupted one did. Scoring leaves the training RNG untouched (its dropout draws
from a generator seeded by run seed and round).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from petsweep.records.status import write_json


class GradientImportance:
    """Callable: (model, round, {name: matrix}) -> {name: score}, cached per round in `cache`."""

    def __init__(
        self, objective, examples: list[dict], trainer, seed: int, device, cache: Path, batches=None
    ):
        self.objective, self.examples, self.trainer = objective, examples, trainer
        self.seed, self.device, self.cache, self.batches = seed, device, cache, batches
        self._encoded: list[dict] | None = None  # encoded on first use: most methods never score

    @property
    def train_set(self) -> list[dict]:
        if self._encoded is None:
            self._encoded = self.objective.encode(self.examples)
        return self._encoded

    def __call__(self, model: nn.Module, round_: int, matrices: dict[str, nn.Parameter]) -> dict[str, float]:
        saved = json.loads(self.cache.read_text()) if self.cache.exists() else {}
        if str(round_) in saved and set(saved[str(round_)]) == set(matrices):
            return saved[str(round_)]
        scores = self._score(model, round_, matrices)
        saved[str(round_)] = scores
        write_json(self.cache, saved)  # atomic: a run stopped while writing keeps the earlier rounds
        return scores

    def _score(self, model: nn.Module, round_: int, matrices: dict[str, nn.Parameter]) -> dict[str, float]:
        trainable = {id(p): p.requires_grad for p in model.parameters()}
        for param in model.parameters():
            param.requires_grad_(False)
        for param in matrices.values():
            param.requires_grad_(True)
        total = {name: 0.0 for name in matrices}
        size = self.trainer.batch_size
        starts = range(0, len(self.train_set) - size + 1, size) or [0]
        starts = list(starts)[: self.batches] if self.batches else list(starts)
        model.to(self.device).train()
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []  # fork_rng takes device ids
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed * 7919 + round_)
            for start in starts:
                batch = self.objective.train_batch(self.train_set[start : start + size])
                loss = self.objective.loss(model, {k: v.to(self.device) for k, v in batch.items()})
                grads = torch.autograd.grad(loss, list(matrices.values()))
                for name, grad in zip(matrices, grads):
                    total[name] += _clipped(grad, self.trainer.max_grad_norm).pow(2).mean().item()
        for param in model.parameters():
            param.requires_grad_(trainable[id(param)])
        return {name: value / len(starts) for name, value in total.items()}


def _clipped(grad: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    if max_norm is None:
        return grad
    return grad * min(1.0, max_norm / (grad.norm().item() + 1e-6))
