"""DeepSpeed ZeRO for backbones that do not fit one device, behind the same small stepping interface as the
plain PyTorch loop, so that train.py reads the same either way.

On a CPU-only machine DeepSpeed runs with the gloo backend; a single process still needs the distributed
environment variables, which are set here when absent.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from petsweep import checkpoint
from petsweep.errors import ConfigError

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

    def resolved(self, total_params: int) -> DeepSpeedConfig:
        """`auto` made concrete for a backbone of `total_params` parameters on this machine."""
        if self.preset != "auto":
            return self
        if not torch.cuda.is_available() or total_params < ZERO3_FROM:
            return DeepSpeedConfig(preset="none")
        offload = total_params >= OFFLOAD_FROM
        return DeepSpeedConfig(
            preset="zero3_offload" if offload else "zero3",
            stage=3,
            offload_optimizer=offload,
            offload_param=offload,
        )


class PlainStepper:
    """The PyTorch loop: backward per micro-batch, clip + AdamW + schedule at each optimizer step."""

    def __init__(self, model: nn.Module, optimizer, scheduler, grad_accum: int, max_grad_norm: float | None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.grad_accum, self.max_grad_norm = grad_accum, max_grad_norm
        self.keep: set[int] | None = None  # ids of the method's parameters (every stage's); None: the trained

    def rebuild(self, optimizer, scheduler) -> None:
        """A new optimizer and schedule mid-run (the next stage of a staged method)."""
        self.optimizer, self.scheduler = optimizer, scheduler

    @property
    def forward_model(self) -> nn.Module:
        return self.model

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.grad_accum).backward()

    def micro_step(self, boundary: bool) -> None:
        if not boundary:
            return
        if self.max_grad_norm:
            nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], self.max_grad_norm
            )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def last_lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return checkpoint.trainable_state(self.model, self.keep)

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        checkpoint.load_trainable(self.model, state)

    def save(self, root: Path, step: int, best, counters: dict) -> None:
        checkpoint.save(root, step, self.model, self.optimizer, self.scheduler, best, counters, self.keep)

    def restore(self, path: Path):
        return checkpoint.restore(path, self.model, self.optimizer, self.scheduler)


def _distributed_env() -> None:
    """A single-process 'cluster' for DeepSpeed when no launcher set one up."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )


def ds_config(
    cfg: DeepSpeedConfig, batch_size: int, grad_accum: int, max_grad_norm: float | None, bf16: bool
):
    zero: dict = {"stage": cfg.stage}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    if cfg.offload_param and cfg.stage == 3:
        zero["offload_param"] = {"device": "cpu"}
    if cfg.param_persistence_threshold is not None:
        zero["stage3_param_persistence_threshold"] = cfg.param_persistence_threshold
    return {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": max_grad_norm or 0.0,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,
    }


class DeepSpeedStepper(PlainStepper):
    """deepspeed.initialize around our model, AdamW and schedule; the engine scales, clips and steps."""

    def __init__(self, model, optimizer, scheduler, config: dict):
        import deepspeed

        _distributed_env()
        self.engine, ds_optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config
        )
        super().__init__(self.engine.module, ds_optimizer, scheduler, 1, None)
        self.stage = config["zero_optimization"]["stage"]

    @property
    def forward_model(self) -> nn.Module:
        return self.engine

    def rebuild(self, optimizer, scheduler) -> None:
        raise RuntimeError("a DeepSpeed engine keeps its optimizer: staged methods run without DeepSpeed")

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # divides by gradient_accumulation_steps itself

    def micro_step(self, boundary: bool) -> None:
        self.engine.step()  # called every micro-batch; steps the optimizer at accumulation boundaries

    def _gathered(self):
        import deepspeed

        params = [p for p in self.model.parameters() if p.requires_grad]
        return deepspeed.zero.GatheredParameters(params) if self.stage == 3 else _nothing()

    def trainable_state(self) -> dict[str, torch.Tensor]:
        with self._gathered():  # under ZeRO-3 a rank holds a slice: gather first, or the file is empty
            return checkpoint.trainable_state(self.model, self.keep)

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        import deepspeed

        params = [p for p in self.model.parameters() if p.requires_grad]
        ctx = deepspeed.zero.GatheredParameters(params, modifier_rank=0) if self.stage == 3 else _nothing()
        with ctx:
            checkpoint.load_trainable(self.model, state)

    def save(self, root: Path, step: int, best, counters: dict) -> None:
        """DeepSpeed's own (partitioned) checkpoint plus our RNG state, counters and best weights."""
        tmp = checkpoint.begin(root, step)
        if tmp is None:
            return
        self.engine.save_checkpoint(str(tmp), tag="engine", client_state={})
        checkpoint.save_extras(tmp, best, {"step": step, **counters})
        checkpoint.commit(tmp, root, step)

    def restore(self, path: Path):
        self.engine.load_checkpoint(str(path), tag="engine")
        return checkpoint.restore_extras(path)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def make_stepper(model, optimizer, scheduler, trainer, cfg: DeepSpeedConfig, total_params: int, bf16: bool):
    """The plain loop, or DeepSpeed when the (resolved) preset asks for a ZeRO stage."""
    chosen = cfg.resolved(total_params)
    if chosen.stage is None:
        return PlainStepper(model, optimizer, scheduler, trainer.grad_accum, trainer.max_grad_norm), chosen
    config = ds_config(chosen, trainer.batch_size, trainer.grad_accum, trainer.max_grad_norm, bf16)
    return DeepSpeedStepper(model, optimizer, scheduler, config), chosen
