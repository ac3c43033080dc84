"""APET (Su et al., 2023): a budget of K tunable scalars at arbitrary positions of the backbone, drawn
uniformly without replacement over every eligible element with a seeded generator.

    python run.py method=apet apet.scale=lora apet.seed=1     # K = LoRA's exact count on this backbone
    python run.py -m apet.scale=lora,adapter,4096,65536 apet.seed=1,2,3

Budget and positions are the `apet` group's (petsweep/methods/apet/positions.py); this module applies them.
Each eligible tensor W that receives k_t of the K positions is reparametrised as W = W0 + scatter(idx, delta):
W0 stays frozen, `delta` (k_t scalars, zero at the start, so the model starts as the backbone) is trained, and
`idx` (the positions) is a buffer saved with the run. Nothing but the chosen positions can change, weight
decay included, and merging (`petsweep export`) is exact. Count: exactly K.

A Linear's weight delta gets its gradient as k sampled products of output gradient and input (grad.py:
torch.sparse.sampled_addmm on the positions' CSR pattern, or gathers for a few positions), so the backward
costs about what the frozen backbone's does; other tensors (biases, norms, GPT-2's Conv1D)
take theirs through torch's parametrizations, the dense gradient gathered at their positions. `gradient:
dense` uses parametrizations everywhere (the reference the benchmark compares against).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod, on_meta
from petsweep.spec.apet import Budget
from petsweep.spec.errors import ConfigError

if TYPE_CHECKING:  # composing a config loads this module: torch loads in functions (grad.py, delta.py)
    import torch
    from torch import nn

log = logging.getLogger("petsweep")


@dataclass
class ApetConfig(MethodConfig):
    """APET's hyper-parameters (beside those of every method: MethodConfig); the budget, its seed and the
    eligible tensors are the `apet` group's.

    Attributes:
        lr: learning rate of the K trained scalars: 1e-1 (docs/lr_sweep.md: at the earlier 1e-3, and at
            1e-2, 60 steps left K=1000 changing no dev prediction on MiniLM-L1; the seed's long constant-lr
            runs use 1e-4, which its presets set).
        gradient: sampled (a Linear's delta gradient from the k sampled products of output gradient and
            input, petsweep/methods/apet/grad.py) or dense (the dense weight gradient gathered at the
            positions).
        delta_fp32: where the frozen backbone is held in bf16 (trainer.frozen_dtype), form W0 + delta in fp32
            (true) or in bf16 (false: runs before the key; a delta below W0's bf16 step is rounded away, e.g.
            1e-3 on a LayerNorm gain near 1). Changes nothing with fp32 frozen weights.
    """

    lr: float = 1e-1
    gradient: str = "sampled"
    delta_fp32: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.gradient not in ("sampled", "dense"):
            raise ConfigError("method.gradient", self.gradient, "choose one of: sampled, dense")


# tensor granularity trains whole tensors: an achieved count more than this fraction below or above K is
# reported (result.json apet.below_requested / above_requested, a note in `petsweep plan` and `count`)
SHORTFALL_TOLERANCE = 0.01


def _counted_only(sizes: list[int], k: int) -> list[torch.Tensor]:
    """K positions on the meta device, tensor by tensor in order: a count needs how many, never which (drawing
    12M positions of a 7B model per run made planning an APET sweep take minutes)."""
    import torch

    local, left = [], k
    for size in sizes:
        take = min(size, left)
        local.append(torch.empty(take, dtype=torch.long, device="meta"))
        left -= take
    return local


@METHODS.register("apet")
class ApetMethod(PETMethod):
    budget_knobs = ("apet.scale",)  # budget=X is apet.scale=X (config.py folds it)
    budget_strategy = "apet_scale"
    Config = ApetConfig
    no_peft_form = "peft has no sparse-delta tuner"
    names_a_budget = False  # a budget sizes it (apet.scale)

    def __init__(self, config: ApetConfig):
        super().__init__(config)
        self.record: dict | None = None  # what result.json records of the positions

    def merge_for_export(self, model):
        from petsweep.methods.apet.grad import merge_sampled

        merge_sampled(model)  # its sampled deltas; the generic merge removes its parametrizations

    def record_fields(self):
        return {"apet": self.record}

    def attach(self, model, ctx):
        from torch import nn
        from torch.nn.utils import parametrize

        from petsweep.methods.apet.delta import SparseDelta
        from petsweep.methods.apet.grad import sample_gradients
        from petsweep.methods.apet.positions import digest, eligible_tensors, place

        budget = ctx.apet  # the run's `apet` group, resolved with the run (RunSpec.apet)
        if budget is None:
            raise ConfigError("apet.scale", None, "method=apet needs a budget: set apet.scale")
        if budget.spec.granularity == "tensor":
            return self._attach_tensors(model, ctx, budget)
        tensors = eligible_tensors(model, ctx, budget.spec)
        sizes = [t.numel() for *_, t in tensors]
        k = budget.resolve(sum(sizes))
        meta = on_meta(model)
        local = _counted_only(sizes, k) if meta else place(sizes, k, budget.positions_seed(k))
        deltas, buffers = [], []
        for (_, module, attr, tensor), idx in zip(tensors, local):
            if idx.numel():
                delta = SparseDelta(idx, tensor, self.config.delta_fp32)
                if self.config.gradient == "sampled" and isinstance(module, nn.Linear) and attr == "weight":
                    sample_gradients(module, delta)
                else:  # norms, biases, GPT-2's Conv1D: the dense gradient is cheap or unavoidable here
                    parametrize.register_parametrization(module, attr, delta, unsafe=True)
                deltas.append(delta.delta)
                buffers.append(delta.idx)
        if not meta:  # the real model's positions (result.json `apet`)
            self.record = self._record(budget, k, deltas, sum(sizes), digest([n for n, *_ in tensors], local))
        return Attached(model, [self.group(deltas)], buffers=buffers)

    def _attach_tensors(self, model, ctx, budget: Budget):
        from petsweep.methods.apet.tensor import seed_biases, select, silence
        from petsweep.methods.base import backbone_params

        spec = budget.spec
        before = sum(p.numel() for _, p in backbone_params(model, ctx))
        seed_biases(model, ctx, spec)  # the seed T5's zero biases are candidates: they count as eligible
        eligible = sum(p.numel() for _, p in backbone_params(model, ctx))
        if spec.scale == "ratio" and not spec.ratio_counts_zero_biases:
            k = budget.resolve(before)  # runs before the key: K = ratio x the backbone's own tensors
        else:
            k = budget.resolve(eligible)
        picked, left_out = select(model, ctx, spec, k)
        names = {id(p): n for n, p in model.named_parameters()}
        chosen = hashlib.sha256("\n".join(sorted(names[id(p)] for p in picked)).encode()).hexdigest()
        self.record = self._record(budget, k, picked, eligible, chosen)
        notes = []
        missed = [side for side in ("below", "above") if self.record[f"{side}_requested"]]
        if missed:  # shown by `petsweep plan` and `count`, kept in result.json
            notes.append(
                f"apet tensor granularity on {ctx.backbone.name}: {self.record['achieved']:,} of "
                f"{k:,} requested ({100 * self.record['achieved'] / k:.0f}%, {missed[0]} by more than "
                f"{100 * SHORTFALL_TOLERANCE:g}%)"
            )
            if not on_meta(model):
                log.warning("%s: result.json apet.%s_requested", notes[0], missed[0])
        return Attached(model, [self.group(picked)], notes=notes, setup=[lambda: silence(left_out)])

    def _record(
        self, budget: Budget, k: int, trained: list[nn.Parameter], eligible: int, positions_sha256: str
    ) -> dict:
        """What result.json records of the budget and the positions (`apet`)."""
        spec = budget.spec
        achieved = sum(p.numel() for p in trained)
        return {
            "scale": spec.scale,
            "requested": k,
            "achieved": achieved,
            "below_requested": achieved < (1 - SHORTFALL_TOLERANCE) * k,  # by more than the tolerance
            "above_requested": achieved > (1 + SHORTFALL_TOLERANCE) * k,  # whole delta units overshoot
            "eligible": eligible,
            "tensors": len(trained),
            "granularity": spec.granularity,
            "seed": spec.seed,
            "positions_seed": budget.positions_seed(k),
            "positions_sha256": positions_sha256,
        }
