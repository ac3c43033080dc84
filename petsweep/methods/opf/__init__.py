"""OPF (Gao et al., 2023): fine-tune the whole model with its most important matrices over-parameterised as
matrix product operators, then contract them back into dense weights.

    python run.py method=opf backbone=bert-base task=rte method.top_n=5
    python run.py method=opf method.strategy=dynamic method.top_n=6 method.split_num=2 method/shapes=bert

Every backbone parameter trains at `lr` (the seed's full fine-tuning; `train_backbone=false` is its
`--fix_all`). For each matrix family (q, k, v, o, ffn_in, ffn_out; `weight_types` picks attention, ffn_in,
ffn_out) the `top_n` matrices with the largest gradient importance (petsweep/train/importance.py) are replaced
by an MPO of their pretrained weight (petsweep/methods/opf/mpo.py: exact at full bond dimension), whose local
tensors train at `mpo_lr`; `train_central` / `train_aux` freeze the central or the auxiliary tensors.
`gauge=opf` (the default) puts the decomposition in OPF's gauge (Lambda^(1/2) on both sides of every bond: the
central tensor of the 7-core layouts is orthogonal and the end tensors carry the spectrum); `gauge=central` is
petsweep's earlier mixed-canonical gauge (the central tensor carries the whole spectrum). Both contract to the
same matrix, but what `train_central` / `train_aux` train and how one optimizer step moves it differ.

- static: one scoring pass before training, top_n per family.
- dynamic: rounds of top_n / split_num more matrices per family, each scoring the matrices not yet
  decomposed on the weights trained so far. Where rounds begin follows OPF's epoch rule: with E =
  `round_epochs`, a round begins at every epoch e with e % ceil(E / split_num) == 0, so round k begins after
  k * ceil(E / split_num) / E of trainer.max_steps (0/40/80% for E=10, split 3), and a split whose later
  rounds fall past E has fewer rounds, as in OPF (E=10, split 8: 5 rounds); `round_epochs=null`: equal
  shares of the steps (petsweep's earlier rule). Each round rebuilds the optimizer over every trained tensor
  (the seed code built it once, so its new tensors never trained: spec 2.3); tensors that go on training keep
  their AdamW state (moments and step counts: `keep_optimizer_state`, as an optimizer never rebuilt), new
  ones start fresh, and the run's one learning-rate schedule continues.

Saved weights are dense: each MPO is contracted back into its matrix, so the model petsweep saves, evaluates
by transfer and exports has the backbone's size and inference cost. Counting on the meta device places the
matrices at the first top_n of each family: a family's matrices share one shape, so the count is exact
whichever ones the scores pick. result.json `opf` records which matrices were chosen, in which round, and
their MPO / dense sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from petsweep.methods import METHODS
from petsweep.methods.base import (
    Attached,
    MethodConfig,
    PETMethod,
    backbone_params,
    on_meta,
    target_modules,
)
from petsweep.methods.opf.gauges import GAUGES
from petsweep.spec.errors import ConfigError

if TYPE_CHECKING:  # composing a config loads this module: torch, mpo.py and layer.py load in functions
    import torch
    from torch import nn

    from petsweep.methods.opf.mpo import MpoShape

WEIGHT_TYPES = {"attention": ("q", "k", "v", "o"), "ffn_in": ("ffn_in",), "ffn_out": ("ffn_out",)}
STRATEGIES = ("static", "dynamic")


@dataclass
class OpfConfig(MethodConfig):
    """OPF's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        lr: learning rate of the dense parameters (the whole backbone trains, as in the seed code).
        mpo_lr: learning rate of the MPO tensors (None: lr).
        strategy: static (choose once before training) or dynamic (split_num rounds).
        top_n: matrices over-parameterised per family in all (the seed code's default is 5; its scripts set
            it, as the opf presets do).
        split_num: rounds of the dynamic strategy, each adding top_n / split_num per family.
        round_epochs: E of OPF's epoch rule for where dynamic rounds begin (a round at every epoch e with
            e % ceil(E / split_num) == 0, as that fraction of the steps); None: equal shares of the steps.
        keep_optimizer_state: at a dynamic round, tensors that go on training keep their AdamW moments and
            step counts (OPF's one optimizer); false: every tensor's state starts afresh (petsweep before).
        gauge: opf (OPF's Lambda^(1/2) on both sides of every bond) or central (the central tensor carries
            the spectrum, petsweep before); see petsweep/methods/opf/mpo.py.
        weight_types: families eligible: attention (q, k, v, o), ffn_in, ffn_out.
        shapes: MPO factorisation per weight type ({rows, cols} lists); a type not given is factorised
            automatically (7 cores, two of them unit bond tensors). Presets: method/shapes=bert|bart|t5.
        trunc: cap on every bond dimension (None: exact).
        train_central: train the central tensor.
        train_aux: train the auxiliary tensors.
        train_backbone: train the dense parameters beside the MPO tensors (the seed's --fix_all: false).
        score_batches: batches of the importance pass (None: one pass over the training data).
    """

    lr: float = 2e-5
    mpo_lr: float | None = None
    strategy: str = "static"
    top_n: int = 1
    split_num: int = 1
    round_epochs: int | None = 10
    keep_optimizer_state: bool = True
    gauge: str = "opf"
    weight_types: list = field(default_factory=lambda: list(WEIGHT_TYPES))
    shapes: dict = field(default_factory=dict)
    trunc: int | None = None
    train_central: bool = True
    train_aux: bool = True
    train_backbone: bool = True
    score_batches: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.strategy not in STRATEGIES:
            raise ConfigError("method.strategy", self.strategy, f"choose one of: {', '.join(STRATEGIES)}")
        if self.top_n < 1:
            raise ConfigError("method.top_n", self.top_n, "must be a positive number of matrices per family")
        split = self.split_num if self.strategy == "dynamic" else 1
        if split < 1 or self.top_n % split:
            raise ConfigError(
                "method.split_num",
                self.split_num,
                f"must divide method.top_n={self.top_n} (one share per round)",
            )
        if self.gauge not in GAUGES:
            raise ConfigError("method.gauge", self.gauge, f"choose one of: {', '.join(GAUGES)}")
        if self.round_epochs is not None and self.round_epochs < 1:
            raise ConfigError("method.round_epochs", self.round_epochs, "must be a positive number of epochs")
        for kind in [*self.weight_types, *self.shapes]:
            if kind not in WEIGHT_TYPES:
                raise ConfigError("method.weight_types", kind, f"choose from: {', '.join(WEIGHT_TYPES)}")
        if self.mpo_lr is not None and not self.mpo_lr > 0:
            raise ConfigError("method.mpo_lr", self.mpo_lr, "the learning rate must be positive")
        if not (self.train_central or self.train_aux or self.train_backbone):
            raise ConfigError(
                "method.train_backbone", False, "with both MPO parts frozen nothing would train"
            )

    @property
    def share(self) -> int:
        """Matrices per family each round adds."""
        return self.top_n // self.split_num if self.strategy == "dynamic" else self.top_n

    def round_starts(self) -> list[float]:
        """The fraction of the run at which each round begins (OPF's epoch rule, or equal shares)."""
        if self.strategy != "dynamic":
            return [0.0]
        if self.round_epochs is None:
            return [k / self.split_num for k in range(self.split_num)]
        every = math.ceil(self.round_epochs / self.split_num)
        return [e / self.round_epochs for e in range(0, self.round_epochs, every)]

    @property
    def rounds(self) -> int:
        return len(self.round_starts())


@dataclass
class Matrix:
    name: str
    kind: str  # attention, ffn_in, ffn_out: the shape preset that applies
    family: str  # q, k, v, o, ffn_in, ffn_out: selection is per family
    module: nn.Linear


@METHODS.register("opf")
class OpfMethod(PETMethod):
    Config = OpfConfig
    no_peft_form = "peft has no MPO tuner"
    restarts_schedule = False  # dynamic rounds continue the run's one learning-rate schedule
    overparameterises = True

    def __init__(self, config: OpfConfig):
        super().__init__(config)
        self.record: dict | None = None  # the real model's choice (result.json `opf`), set when attached
        self.keeps_optimizer_state = config.keep_optimizer_state

    def importance_batches(self) -> int | None:
        return self.config.score_batches

    def record_fields(self):
        return {"opf": self.record}

    def stage_steps(self, max_steps: int) -> list[int]:
        c = self.config
        rounds = c.rounds
        if rounds > max_steps:
            raise ConfigError(
                "method.split_num", c.split_num, f"more rounds than trainer.max_steps={max_steps}"
            )
        if c.round_epochs is None:  # equal shares (petsweep's earlier rule)
            per_round = math.ceil(max_steps / rounds)
            return [per_round] * (rounds - 1) + [max_steps - per_round * (rounds - 1)]
        starts = [math.floor(f * max_steps) for f in c.round_starts()] + [max_steps]
        steps = [b - a for a, b in zip(starts, starts[1:])]
        if min(steps) < 1:
            raise ConfigError(
                "method.split_num",
                c.split_num,
                f"leaves a round without steps in trainer.max_steps={max_steps}",
            )
        return steps

    def attach(self, model, ctx):
        """Every round at once: counting (meta device, first top_n per family) and evaluation (dense)."""
        if not ctx.training:
            return self._dense_groups(model, ctx)  # saved weights are dense: nothing to decompose
        return self._round(model, ctx, None)

    def attach_stage(self, model, ctx, stage):
        return self._round(model, ctx, stage)

    def _round(self, model, ctx, stage: int | None) -> Attached:
        from torch import nn

        from petsweep.methods.opf.layer import MpoLinear

        c = self.config
        matrices = self._matrices(model, ctx)
        per_round = c.share * c.rounds if stage is None else c.share
        remaining = [m for m in matrices if isinstance(m.module, nn.Linear)]
        meta = on_meta(model)
        if ctx.importance is None or meta:
            scores = {m.name: -i for i, m in enumerate(remaining)}  # count: first top_n (shapes are shared)
        else:
            weights = {f"{m.name}.weight": m.module.weight for m in remaining}
            scores = {
                name.removesuffix(".weight"): s
                for name, s in ctx.importance(model, stage or 0, weights).items()
            }
        setup = []
        for family in dict.fromkeys(m.family for m in remaining):
            members = sorted((m for m in remaining if m.family == family), key=lambda m: -scores[m.name])
            for m in members[:per_round]:
                mpo = MpoLinear(m.module, self._shape(m), family, stage or 0, c.gauge)
                parent, _, child = m.name.rpartition(".")
                model.get_submodule(parent).add_module(child, mpo)
                setup.append(mpo.load)
        if not meta:
            self.record = self._record(model, len(matrices))
        return Attached(model, self._groups(model, ctx), setup=setup)

    def _matrices(self, model, ctx) -> list[Matrix]:
        from torch import nn

        from petsweep.methods.opf.layer import MpoLinear

        found, seen = [], set()
        for kind in self.config.weight_types:
            for family in WEIGHT_TYPES[kind]:
                _, modules, _ = target_modules(model, ctx, [family], f"method.weight_types={kind}")
                for name, module in modules:
                    if id(module) in seen:
                        continue  # a fused projection is one matrix, in its first family
                    seen.add(id(module))
                    if not isinstance(module, (nn.Linear, MpoLinear)):
                        raise ConfigError(
                            "method",
                            "opf",
                            f"over-parameterises nn.Linear matrices; {name} is {type(module).__name__}",
                        )
                    found.append(Matrix(name, kind, family, module))
        for family in dict.fromkeys(m.family for m in found):
            size = sum(m.family == family for m in found)
            if self.config.top_n > size:
                raise ConfigError(
                    "method.top_n",
                    self.config.top_n,
                    f"exceeds the {size} {family} matrices of {ctx.backbone.name}",
                )
        return found

    def _shape(self, m: Matrix) -> MpoShape:
        from petsweep.methods.opf.mpo import MpoShape, auto_shape

        given = self.config.shapes.get(m.kind)
        out_features, in_features = m.module.out_features, m.module.in_features
        if not given:
            return auto_shape(out_features, in_features, self.config.trunc)
        shape = MpoShape(tuple(given["rows"]), tuple(given["cols"]), self.config.trunc)
        if not shape.fits(out_features, in_features):
            raise ConfigError(
                f"method.shapes.{m.kind}",
                f"{list(shape.rows)} x {list(shape.cols)}",
                f"the factors must multiply to the {out_features} x {in_features} matrices of {m.name}",
            )
        return shape

    def _groups(self, model, ctx) -> list:
        from petsweep.methods.opf.layer import MpoLinear

        c = self.config
        central, aux = [], []
        for module in model.modules():
            if isinstance(module, MpoLinear):
                for k, tensor in enumerate(module.tensors):
                    (central if k == module.shape.central else aux).append(tensor)
        mpo_ids = {id(t) for t in central + aux}
        dense = [p for _, p in backbone_params(model, ctx) if id(p) not in mpo_ids]
        groups = []
        if c.train_backbone:
            groups.append(self.group(dense, name="dense"))
        mpo = (central if c.train_central else []) + (aux if c.train_aux else [])
        if mpo:
            groups.append(self.group(mpo, name="mpo", lr=c.mpo_lr or c.lr))
        return groups

    def _dense_groups(self, model, ctx) -> Attached:
        self._matrices(model, ctx)  # the same checks
        dense = [p for _, p in backbone_params(model, ctx)]
        return Attached(model, [self.group(dense, name="dense")])

    def _record(self, model: nn.Module, eligible: int) -> dict:
        from petsweep.methods.opf.layer import MpoLinear

        chosen = []
        for name, module in model.named_modules():
            if isinstance(module, MpoLinear):
                mpo, dense = module.shape.params(), module.in_features * module.out_features
                chosen.append(
                    {
                        "name": name,
                        "family": module.family,
                        "round": module.round,
                        "mpo_params": mpo,
                        "dense_params": dense,
                        "ratio": round(mpo / dense, 4),
                        "rows": list(module.shape.rows),
                        "cols": list(module.shape.cols),
                    }
                )
        return {
            "strategy": self.config.strategy,
            "eligible_matrices": eligible,
            "chosen": chosen,
            "mpo_params": sum(e["mpo_params"] for e in chosen),
            "dense_params": sum(e["dense_params"] for e in chosen),
        }

    def saved_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Contract every MPO of a trainable state back into its matrix: saved weights are dense. A tensor
        the run froze (train_central / train_aux false) is not in the trainable state: it is read from the
        module, where it kept its decomposed value."""
        from petsweep.methods.opf.layer import MpoLinear
        from petsweep.methods.opf.mpo import contract

        dense = dict(state)
        for name, module in model.named_modules():
            if isinstance(module, MpoLinear):
                tensors = [dense.pop(f"{name}.tensors.{k}", None) for k in range(len(module.tensors))]
                tensors = [t if t is not None else module.tensors[k].detach() for k, t in enumerate(tensors)]
                dense[f"{name}.weight"] = contract([t.double() for t in tensors]).to(tensors[0].dtype)
        return dense
