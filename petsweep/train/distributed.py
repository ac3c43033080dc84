"""DeepSpeed ZeRO for backbones that do not fit one device, behind the same small stepping interface as the
plain PyTorch loop, so that train.py reads the same either way; both run on one rank or several.

With several ranks each trains its share of the global batch; the plain loop averages gradients over ranks
(petsweep.train.ranks), DeepSpeed does it itself and, under ZeRO-3, holds 1/ranks of every partitioned tensor.
Checkpoints are written by rank 0 (weights, optimizer, counters) and by every rank (its RNG state, and its
DeepSpeed shards) into one directory, committed by rank 0 once all have written.

On a CPU-only machine DeepSpeed runs with the gloo backend; a single process still needs the distributed
environment variables, which are set here when absent.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch import nn

from petsweep.spec.config import DeepSpeedConfig, offload_host_bytes
from petsweep.spec.errors import ConfigError
from petsweep.train import checkpoint, ranks


def host_memory_available() -> int | None:
    """MemAvailable of this machine in bytes (Linux), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_ranks(spec, world: int, total_params: int, trainable: int) -> None:
    """Refuse, before anything is claimed or loaded, a run its ranks cannot carry."""
    trainer = spec.trainer
    if trainer.batch_size % world:
        raise ConfigError(
            "trainer.batch_size",
            trainer.batch_size,
            f"is the global batch and must divide evenly among the run's {world} ranks",
        )
    chosen = chosen_preset(spec.deepspeed, total_params, trainable)
    if chosen.stage is not None and not torch.distributed.is_available():
        raise ConfigError(
            "deepspeed.preset",
            spec.deepspeed.preset,
            "DeepSpeed needs torch.distributed, which this torch build lacks: use deepspeed=none",
        )
    if chosen.offload_param or chosen.offload_optimizer:
        param_bytes = 2 if torch.cuda.is_available() else 4  # bf16 on GPUs
        need = offload_host_bytes(total_params, trainable, 1, param_bytes)
        free = host_memory_available()
        if free is not None and need > free:
            raise ConfigError(
                "deepspeed.preset",
                chosen.preset,
                f"offloading {total_params:,} parameters ({trainable:,} trained) needs about "
                f"{need / 2**30:.1f} GiB of host memory and this machine has {free / 2**30:.1f} GiB free: "
                "use deepspeed=zero3 on more GPUs",
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
        trained = [p for p in self.model.parameters() if p.requires_grad]
        ranks.average_gradients(trained)  # several ranks: the mean over the global batch, as one rank has it
        if self.max_grad_norm:
            nn.utils.clip_grad_norm_(trained, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def last_lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def shards(self) -> dict | None:
        """What each rank holds under ZeRO (None without DeepSpeed: every rank holds everything)."""
        return None

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return checkpoint.trainable_state(self.model, self.keep)

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        checkpoint.load_trainable(self.model, state)

    def save(self, root: Path, step: int, best, counters: dict) -> None:
        """Rank 0 writes the checkpoint (every rank holds the same weights and optimizer); the others add
        their RNG state to it before rank 0 commits it."""
        me = ranks.current()
        if not me.distributed:
            checkpoint.save(root, step, self.model, self.optimizer, self.scheduler, best, counters, self.keep)
            return
        tmp = ranks.from_main(lambda: checkpoint.begin(root, step))
        if tmp is None:
            return
        if me.main:
            checkpoint.write_into(
                tmp, step, self.model, self.optimizer, self.scheduler, best, counters, self.keep
            )
        else:
            checkpoint.save_rank_rng(tmp, me.rank)
        _commit_when_all_wrote(tmp, root, step)

    def restore(self, path: Path):
        restored = checkpoint.restore(path, self.model, self.optimizer, self.scheduler)
        _restore_rank_rng(path)
        return restored


def _commit_when_all_wrote(tmp: Path, root: Path, step: int) -> None:
    ranks.barrier()
    if ranks.current().main:
        checkpoint.commit(tmp, root, step)
    ranks.barrier()


def _restore_rank_rng(path: Path) -> None:
    me = ranks.current()
    if not me.main and not checkpoint.restore_rank_rng(path, me.rank):
        torch.manual_seed(rank_seed(checkpoint.saved_step(path), me.rank))  # saved by fewer ranks


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s own randomness (dropout) once the model is built: rank 0 keeps the run's
    stream, so a one-rank run is unchanged."""
    return seed if rank == 0 else (seed * 1_000_003 + rank) % 2**63


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


def _comm_env() -> None:
    """What DeepSpeed's comm layer needs before it starts: a cluster's environment (_distributed_env) and,
    on a CPU-only machine, no build of its shared-memory allreduce. DeepSpeed compiles that C++ op the
    first time a process starts its comm (1-2 min, once per machine, a compiler needed: 80 s of a fresh
    CI); the ranks then reduce through gloo, as petsweep's other CPU ranks do and as DeepSpeed does where
    the op cannot build. As uses_ds_adam's CPU Adam: a build that buys nothing where the host is the
    device."""
    _distributed_env()
    if torch.cuda.is_available():
        return
    try:
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # read by deepspeed.comm.build_shm_op
    except Exception:  # noqa: BLE001 (another DeepSpeed: it builds the op, as before)
        pass


def ds_config(
    cfg: DeepSpeedConfig,
    batch_size: int,
    grad_accum: int,
    max_grad_norm: float | None,
    bf16: bool,
    world: int = 1,
    ds_adam: bool = False,
):
    """DeepSpeed's config; `batch_size` is the global batch (each of `world` ranks takes its share), and
    `ds_adam` says whether the optimizer is DeepSpeed's CPU Adam (else a client torch AdamW, which
    ZeRO-Offload accepts only when told so)."""
    zero: dict = {"stage": cfg.stage}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    if cfg.offload_param and cfg.stage == 3:
        zero["offload_param"] = {"device": "cpu"}
    if cfg.param_persistence_threshold is not None:
        zero["stage3_param_persistence_threshold"] = cfg.param_persistence_threshold
    return {
        "train_micro_batch_size_per_gpu": batch_size // world,
        "train_batch_size": batch_size * grad_accum,
        "gradient_accumulation_steps": grad_accum,
        "zero_force_ds_cpu_optimizer": ds_adam,
        "gradient_clipping": max_grad_norm or 0.0,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,
    }


class DeepSpeedStepper(PlainStepper):
    """deepspeed.initialize around our model, AdamW and schedule; the engine scales, clips and steps."""

    def __init__(self, model, optimizer, scheduler, config: dict):
        import deepspeed

        _comm_env()
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

    def shards(self) -> dict:
        """Elements of parameters and of fp32 optimizer partitions each rank holds, in rank order (ZeRO-3
        partitions parameters; ZeRO-2 optimizer state only)."""
        held = sum(getattr(p, "ds_tensor", p).numel() for p in self.model.parameters())
        flat = getattr(self.optimizer, "fp32_partitioned_groups_flat", None) or getattr(
            self.optimizer, "single_partition_of_fp32_groups", []
        )
        mine = (held, sum(t.numel() for t in flat))
        everyone = ranks.gather(mine)
        return {"params": [p for p, _ in everyone], "optimizer": [o for _, o in everyone]}

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
        """DeepSpeed's own checkpoint (each rank writes its shards) plus our RNG states, counters and best
        weights, committed by rank 0 once every rank has written."""
        me = ranks.current()
        tmp = ranks.from_main(lambda: checkpoint.begin(root, step))
        if tmp is None:
            return
        self.engine.save_checkpoint(str(tmp), tag="engine", client_state={})
        if me.main:
            checkpoint.save_extras(tmp, best, {"step": step, **counters})
        else:
            checkpoint.save_rank_rng(tmp, me.rank)
        _commit_when_all_wrote(tmp, root, step)

    def restore(self, path: Path):
        self.engine.load_checkpoint(str(path), tag="engine")
        restored = checkpoint.restore_extras(path)
        _restore_rank_rng(path)
        return restored


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def chosen_preset(cfg: DeepSpeedConfig, total_params: int, trainable: int) -> DeepSpeedConfig:
    """The preset this run uses on this machine (`auto` resolved by size, GPUs and host memory)."""
    return cfg.resolved(total_params, host_memory_available(), trainable)


def uses_ds_adam(chosen: DeepSpeedConfig) -> bool:
    """DeepSpeed's CPU Adam for offloaded optimizer state on GPU machines, where its op builds (it is several
    times faster than torch's AdamW on the host); torch's AdamW elsewhere (on a CPU-only machine the host is
    the device anyway, and the op's 50 s JIT build buys nothing)."""
    if not chosen.offload_optimizer or not torch.cuda.is_available():
        return False
    try:
        from deepspeed.ops.op_builder import CPUAdamBuilder

        return bool(CPUAdamBuilder().is_compatible(verbose=False))
    except Exception:  # no compiler or headers: the client optimizer it is
        return False


def sharded_loading(chosen: DeepSpeedConfig, method, trainer, bf16: bool, world: int):
    """HF's ZeRO-3 integration: while the returned object lives, `from_pretrained` builds every module
    straight into its partitions (each rank reads only what it keeps) instead of loading the whole model on
    every rank first. None where the run is not ZeRO-3, or its method must see whole weights to attach."""
    if chosen.stage != 3 or not method.attaches_to_partitions:
        return None
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    _comm_env()
    deepspeed.init_distributed()  # zero.Init asks DeepSpeed's comm layer for the world size
    config = ds_config(
        chosen,
        trainer.batch_size,
        trainer.grad_accum,
        trainer.max_grad_norm,
        bf16,
        world,
        uses_ds_adam(chosen),
    )
    return HfDeepSpeedConfig(config)


def forget_sharded_loading() -> None:
    """End HF's ZeRO-3 integration for this process (it is global: a later run, or a count on the meta
    device, would otherwise build its modules under zero.Init)."""
    import sys

    if "transformers.integrations.deepspeed" in sys.modules:
        sys.modules["transformers.integrations.deepspeed"].unset_hf_deepspeed_config()


def make_stepper(model, optimizer, scheduler, trainer, chosen: DeepSpeedConfig, bf16: bool, world: int = 1):
    """The plain loop, or DeepSpeed when the chosen preset asks for a ZeRO stage."""
    if chosen.stage is None:
        return PlainStepper(model, optimizer, scheduler, trainer.grad_accum, trainer.max_grad_norm)
    ds_adam = uses_ds_adam(chosen)
    config = ds_config(
        chosen, trainer.batch_size, trainer.grad_accum, trainer.max_grad_norm, bf16, world, ds_adam
    )
    return DeepSpeedStepper(model, optimizer, scheduler, config)
