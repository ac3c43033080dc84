"""The schema of a run's groups and the checks of its data: every check runs before a run directory exists.

`typed_parts` and the schema dataclasses type a run's groups. Composing conf/ is petsweep.compose (the floor
above the methods, whose Config classes are the method group's base nodes); validating a whole run builds
its method and may count on the meta device: that is petsweep.model.resolve.resolve_run, which uses these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from petsweep.spec.apet import ApetSpec, Budget
from petsweep.spec.backbone import BackboneSpec
from petsweep.spec.errors import ConfigError
from petsweep.spec.task import TaskSpec
from petsweep.spec.typecheck import check_types

PRESETS = ("auto", "none", "zero2", "zero3", "zero3_offload")
ZERO3_FROM, OFFLOAD_FROM = 3e9, 3e10  # parameters; the `auto` rule


@dataclass
class DeepSpeedConfig:
    """conf/deepspeed: the preset's ZeRO stage and offloading (see conf/deepspeed/*.yaml)."""

    preset: str = "auto"
    stage: int | None = None
    offload_optimizer: bool = False
    offload_param: bool = False
    param_persistence_threshold: int | None = None

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ConfigError("deepspeed.preset", self.preset, f"choose one of: {', '.join(PRESETS)}")
        if self.stage not in (None, 0, 1, 2, 3):
            raise ConfigError("deepspeed.stage", self.stage, "choose one of: null, 0, 1, 2, 3")

    def resolved(
        self, total_params: int, host_bytes_free: int | None = None, trainable: int = 0
    ) -> DeepSpeedConfig:
        """`auto` made concrete for a backbone of `total_params` parameters on this machine: ZeRO-3 from 3B
        parameters on GPUs, with CPU offload from 30B where the host has the memory the offload needs."""
        if self.preset != "auto":
            return self
        import torch  # here, not at the top: composing and validating a config needs no torch

        if not torch.cuda.is_available() or total_params < ZERO3_FROM:
            return DeepSpeedConfig(preset="none")
        offload = total_params >= OFFLOAD_FROM and (
            host_bytes_free is None or offload_host_bytes(total_params, trainable, 1) <= host_bytes_free
        )
        return DeepSpeedConfig(
            preset="zero3_offload" if offload else "zero3",
            stage=3,
            offload_optimizer=offload,
            offload_param=offload,
        )


def check_staged_preset(method, max_steps: int, preset: DeepSpeedConfig) -> None:
    """The one rule for a method that trains in stages under DeepSpeed: each stage rebuilds the optimizer,
    which a DeepSpeed engine keeps, so a staged method (stage_steps over `max_steps` gives several) and a
    DeepSpeed preset are refused together. Applied where the preset is known: at validation for an explicit
    preset, and in the executing process once `auto` is resolved (run.app.before_claim, on the preset
    train.distributed.chosen_preset picks), before the run is claimed; `auto` not yet resolved passes."""
    staged = len(method.stage_steps(max_steps)) > 1  # always asked: it checks the stages fit max_steps
    if not staged or preset.preset in ("auto", "none"):
        return
    raise ConfigError(
        "deepspeed.preset",
        preset.preset,
        f"method {method.config.name} trains in stages, which rebuild the optimizer mid-run; DeepSpeed "
        "engines cannot: use deepspeed=none",
    )


def offload_host_bytes(total_params: int, trainable: int, nodes: int, param_bytes: int = 2) -> int:
    """Host memory per node that ZeRO-3 offload needs: the parameters (bf16 on GPUs) and, per trainable
    parameter, an fp32 master copy, gradient and Adam's two moments (16 bytes), shared across the nodes."""
    return (param_bytes * total_params + 16 * trainable) // max(1, nodes)


SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
FROZEN_DTYPES = ("auto", "fp32", "bf16")  # auto: bf16 when the run computes in bf16
# trainer.keep: what a COMPLETED run keeps on disk, each less than the one before
# (petsweep/records/retention.py)
KEEPS = ("checkpoints", "weights", "records")
# The task head's learning rate, the same for every method (trainer.head_lr; docs/methods.md): a new
# random head trained at each method's own lr (prompt tuning's 0.3, full FT's 5e-5) made a method comparison
# compare head learning rates. null trains the head at the method's lr (every run before #26).
HEAD_LR = 2e-3


@dataclass
class TrainerConfig:
    """conf/trainer: see conf/trainer/default.yaml for what each key does."""

    max_steps: int = 100
    batch_size: int = 16
    grad_accum: int = 1
    head_lr: float | None = HEAD_LR
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    schedule: str = "linear"
    max_grad_norm: float | None = 1.0
    eval_every: int = 50
    log_every: int = 10
    early_stopping_patience: int | None = None
    eval_batch_size: int = 32
    save_every: int = 50
    precision: str = "auto"
    device: str = "auto"
    eval_only: bool = False
    num_threads: int | None = None
    ranks: int | None = None
    frozen_dtype: str = "auto"
    keep: str = (
        "checkpoints"  # what a COMPLETED run keeps on disk (petsweep/records/retention.py); not identity
    )

    def __post_init__(self):
        patience = self.early_stopping_patience
        if patience is not None and (not isinstance(patience, int) or patience < 1):
            raise ConfigError(
                "trainer.early_stopping_patience", patience, "must be null (off) or an integer >= 1"
            )
        if self.head_lr is not None and not self.head_lr > 0:
            raise ConfigError(
                "trainer.head_lr", self.head_lr, "must be a positive learning rate, or null (the method's lr)"
            )
        if self.ranks is not None and (not isinstance(self.ranks, int) or self.ranks < 1):
            raise ConfigError(
                "trainer.ranks", self.ranks, "must be null (the backbone's GPUs) or an integer >= 1"
            )
        for key in (
            "max_steps",
            "batch_size",
            "grad_accum",
            "eval_every",
            "log_every",
            "eval_batch_size",
            "save_every",
        ):
            if getattr(self, key) <= 0:
                raise ConfigError(f"trainer.{key}", getattr(self, key), "must be a positive integer")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("trainer.warmup_ratio", self.warmup_ratio, "must be in [0, 1)")
        for key, choices in (
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
            ("device", DEVICES),
            ("frozen_dtype", FROZEN_DTYPES),
            ("keep", KEEPS),
        ):
            if getattr(self, key) not in choices:
                raise ConfigError(
                    f"trainer.{key}", getattr(self, key), f"choose one of: {', '.join(choices)}"
                )
        if self.frozen_dtype == "bf16" and self.precision == "fp32":  # fp32 activations meet bf16 weights
            raise ConfigError(
                "trainer.frozen_dtype", "bf16", "needs bf16 compute: set trainer.precision to bf16 or auto"
            )


@dataclass
class RunSpec:
    """A composed config, validated and typed: what one run needs to start."""

    backbone: BackboneSpec
    method: object  # the built petsweep.methods.PETMethod (the methods' floor, above this one)
    task: TaskSpec
    trainer: TrainerConfig
    deepspeed: DeepSpeedConfig
    seed: int
    sweep_name: str
    runs_root: str
    wandb: dict | None
    config: dict  # the config as the run records it (config.yaml): model.resolve.resolve_run
    budget: object = None  # petsweep.model.budget.BudgetChoice where `budget` sized a method's knob
    # the `apet` group resolved: its spec and K on this backbone (model.resolve.apet_budget); None where the
    # group is off. Methods are told it in AttachContext.apet; nothing sets it on a method object
    apet: Budget | None = None


def typed(cls, values: dict, key: str):
    """Build dataclass `cls` from a config node; an unknown key is a ConfigError listing the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    for name in values:
        if name not in known:
            raise ConfigError(
                f"{key}.{name}", values[name], f"unknown key; valid: {', '.join(sorted(known))}"
            )
    check_types(cls, values, key)
    return cls(**values)


def _check_optimized(name, task: TaskSpec) -> None:
    choices = ["dev", "test", "train_subset", *(f"test/{m}" for m in task.metrics)]
    if name not in choices:
        raise ConfigError("optimized_metric", name, f"choose one of: {', '.join(choices)}")


def check_seed(seed) -> None:
    """The run's seed is an integer: the only check of resolve_run that reads the top-level seed (planning
    validates once per config but for its seed, and checks each run's seed with this)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError("seed", seed, "must be an integer")


RUN_PARTS = ("backbone", "task", "method", "trainer", "paths")  # the groups every run reads


def check_sweep_name(name) -> None:
    """A sweep's folder under the runs root (spec/identity.sweep_dir): `..` would be the runs root's parent,
    and a name over 255 bytes no filesystem takes (an OSError traceback: review of 2026-12-06, G5)."""
    if str(name) == "..":
        raise ConfigError("sweep_name", name, "'..' is the runs root's parent: choose a name")
    if len(str(name).encode()) > 255:
        raise ConfigError("sweep_name", f"{str(name)[:32]}...", "a folder name of at most 255 bytes")


def typed_parts(data: dict) -> tuple[BackboneSpec, TaskSpec, ApetSpec]:
    """The checks of a run that need no method object, as data: the backbone, the task and their fit, the
    `apet` group's types, the seed and optimized_metric; returns the typed backbone, task and apet group.

    The first part of validating a run (petsweep.model.resolve.resolve_run, which builds the method, checks
    it on the backbone, checks that the `apet` group is on exactly for a method sized by it and solves its
    budget). `data`: the plain config, with `budget=` folded into apet.scale
    for APET (petsweep.model.budget.fold_apet)."""
    for part in RUN_PARTS:  # `~method` on the command line deletes a whole group (it was a KeyError)
        if not isinstance(data.get(part), dict):
            raise ConfigError(
                part, data.get(part), "a run needs this part of the config: set its keys, not ~" + part
            )
    backbone = typed(BackboneSpec, data["backbone"], "backbone")
    task = typed(TaskSpec, data["task"], "task")
    if task.kind == "generation" and backbone.family == "encoder":
        raise ConfigError(
            "task",
            task.name,
            f"a generation task needs an encoder_decoder or decoder backbone, "
            f"and backbone {backbone.name} is an encoder",
        )
    if task.kind == "regression" and backbone.family != "encoder":
        raise ConfigError(
            "task",
            task.name,
            f"regression tasks need an encoder backbone (a regression head), "
            f"and backbone {backbone.name} is {backbone.family}",
        )
    apet = typed(ApetSpec, dict(data.get("apet") or {}), "apet")
    check_seed(data["seed"])
    check_sweep_name(data["sweep_name"])
    _check_optimized(data.get("optimized_metric", "dev"), task)
    return backbone, task, apet


def dataclass_defaults(cls) -> dict:
    """Every field of a config dataclass with its default ("???", Hydra's missing value, if none)."""
    defaults = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
        else:
            defaults[f.name] = "???"
    return defaults
