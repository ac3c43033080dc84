"""The `apet` group as data: APET's budget K, its seed, and where its positions may fall (no torch: composing
and validating a config imports this; drawing the positions is petsweep/methods/apet/positions.py).

`scale` names the budget: a method (K = that method's exact trainable count on this backbone, with its
defaults: counted on the meta device), a positive integer, or `ratio` (K = round(apet.ratio x eligible)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from petsweep.spec.errors import ConfigError

GRANULARITIES = ("element", "tensor")
SPLITS = ("floor", "round")
POOLS = ("seed", "petsweep")
ZERO_BIASES = ("t5", "every")
MAX_SEED = 2**31 - 1  # K x seed (seed_by_budget, tensor granularity) then fits a 64-bit generator seed


@dataclass
class ApetSpec:
    """conf/apet. Attributes:
    scale: a method name, a positive integer, or `ratio`; null: APET off (nothing of the group counts).
    seed: seed of the positions (the run seed stays for data order and initialisation).
    granularity: element (K scalars at arbitrary positions) or tensor (whole tensors, PET_Scaling's code:
        petsweep/methods/apet/tensor.py; the achieved count may differ from K).
    ratio: with scale=ratio, the fraction of the eligible elements to train, in (0, 1].
    eligible: regular expressions over parameter names; null: every parameter inside the transformer
        blocks (attention and FFN weights and biases, norms) but embeddings; never the task head.
        Element granularity only.
    delta_fraction: tensor granularity: the share of K filled from the delta pool (LoRA and adapter units).
    include_delta_pool: tensor granularity: false takes every tensor from the backbone.
    pool: tensor granularity: the candidates. seed (PET_Scaling's models: its T5 builds every Linear with a
        bias, so a bias-free backbone gets zero biases on every attention projection, self and cross, every
        FFN projection and the LM head, as inner candidates; its LoRA pool sits on q and v of every attention,
        cross-attention included) or petsweep (runs before the key: the backbone as it is, LoRA on
        self-attention q and v only).
    split: tensor granularity: how K is divided between the pools. floor (PET_Scaling's code: each pool may
        take floor(share x K), so an odd K leaves one scalar unused) or round (runs before the key: the delta
        pool round(share x K), the inner pool the rest).
    zero_biases: tensor granularity, pool=seed: which backbones get the seed T5's zero biases. t5 (the seed:
        only its T5 family builds every Linear with a bias; its BLOOM and Llama build lm_head and projections
        without, so there pool=seed is the backbone's own tensors) or every (runs before the key: every
        bias-free backbone, e.g. BLOOM's 250,880-scalar lm_head bias). Changes nothing on T5.
    ratio_counts_zero_biases: tensor granularity, scale=ratio: K = ratio x the eligible scalars, the zero
        biases pool=seed adds counted (true) or not (false: runs before the key).
    seed_by_budget: draw positions with the generator seeded by K x seed (PET_Scaling: budgets of one seed
        are independent draws) instead of by seed (false: the K positions of one seed are the first K of one
        draw, so a smaller budget's positions lie inside a larger one's). Tensor granularity always seeds by
        K x seed, as the seed code does. result.json `apet.positions_seed` says which seed drew them.
    """

    scale: str | int | None = None
    seed: int | None = 0
    granularity: str = "element"
    ratio: float | None = None
    eligible: list | None = field(default=None)
    delta_fraction: float = 0.5
    include_delta_pool: bool = True
    pool: str = "seed"
    split: str = "floor"
    seed_by_budget: bool = False
    zero_biases: str = "t5"
    ratio_counts_zero_biases: bool = True

    def __post_init__(self):
        if isinstance(self.scale, str) and self.scale.strip().isdigit():
            self.scale = int(self.scale)  # "4096" from a YAML string is the integer budget
        if self.granularity not in GRANULARITIES:
            raise ConfigError(
                "apet.granularity",
                self.granularity,
                f"choose one of: {', '.join(GRANULARITIES)}",
            )
        if isinstance(self.scale, bool) or (isinstance(self.scale, int) and self.scale <= 0):
            raise ConfigError(
                "apet.scale", self.scale, "an integer budget must be a positive number of scalars"
            )
        if self.scale == "ratio" and not (isinstance(self.ratio, (int, float)) and 0 < self.ratio <= 1):
            raise ConfigError("apet.ratio", self.ratio, "with apet.scale=ratio give a fraction in (0, 1]")
        if self.scale != "ratio" and self.ratio is not None:
            raise ConfigError("apet.ratio", self.ratio, "is read only with apet.scale=ratio")
        if self.pool not in POOLS:
            raise ConfigError("apet.pool", self.pool, f"choose one of: {', '.join(POOLS)}")
        if self.split not in SPLITS:
            raise ConfigError("apet.split", self.split, f"choose one of: {', '.join(SPLITS)}")
        if self.zero_biases not in ZERO_BIASES:
            choices = f"choose one of: {', '.join(ZERO_BIASES)}"
            raise ConfigError("apet.zero_biases", self.zero_biases, choices)
        if not 0 <= self.delta_fraction <= 1:
            raise ConfigError("apet.delta_fraction", self.delta_fraction, "must be in [0, 1]")
        if self.granularity == "tensor" and self.seed_by_budget:
            raise ConfigError(
                "apet.seed_by_budget", self.seed_by_budget, "tensor granularity always seeds by K x seed"
            )
        if self.granularity == "tensor" and self.eligible:
            raise ConfigError("apet.eligible", self.eligible, "is read at element granularity only")
        # a disabled group's seed is never read (records of runs from before the group had one hold null)
        if self.scale is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ConfigError("apet.seed", self.seed, "must be an integer")
        if self.scale is not None and not 0 <= self.seed <= MAX_SEED:
            # random.seed(-s) is random.seed(s): a negative seed drew seed |s|'s tensors under another id
            raise ConfigError("apet.seed", self.seed, f"must be in [0, {MAX_SEED}]")
        if self.scale is not None and self.seed_by_budget and self.seed == 0:
            raise ConfigError(
                "apet.seed",
                0,
                "with apet.seed_by_budget=true seeds K x 0 = 0 for every K (nested): use 1 or more",
            )


@dataclass
class Budget:
    """A resolved budget: the spec, and K when known before the model is seen (None: a ratio)."""

    spec: ApetSpec
    k: int | None

    def resolve(self, eligible: int) -> int:
        k = self.k if self.k is not None else round(self.spec.ratio * eligible)
        if k > eligible:
            raise ConfigError(
                "apet.scale",
                self.spec.scale,
                f"asks for {k:,} scalars; this backbone has {eligible:,} eligible (apet.eligible)",
            )
        if k < 1:
            raise ConfigError(
                "apet.ratio", self.spec.ratio, f"of {eligible:,} eligible scalars is no scalar at all"
            )
        if self.positions_seed(k) > 2**63 - 1:  # checked on the meta device, before any claim
            raise ConfigError(
                "apet.seed", self.spec.seed, f"K x seed = {self.positions_seed(k):,} overflows a 64-bit seed"
            )
        return k

    def positions_seed(self, k: int) -> int:
        """The seed of the generator that draws the positions of budget `k`."""
        return (
            k * self.spec.seed
            if self.spec.seed_by_budget or self.spec.granularity == "tensor"
            else self.spec.seed
        )
