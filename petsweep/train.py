"""The training loop, read top to bottom: optimizer, schedule, seeded batches, eval, checkpoints, resume.

Determinism: batch order is a pure function of (seed, step), and a checkpoint holds everything that
changes while training (weights, optimizer, scheduler, RNG, counters), so a run resumed from any
checkpoint ends exactly where the uninterrupted run does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from petsweep import checkpoint, preemption, ranks
from petsweep.config import RunSpec, TrainerConfig
from petsweep.distributed import DeepSpeedConfig, make_stepper, rank_seed, uses_ds_adam
from petsweep.errors import ConfigError
from petsweep.methods.base import ParamGroup
from petsweep.objectives import Objective
from petsweep.progress import StepProgress
from petsweep.status import RunDir
from petsweep.tasks import TaskData
from petsweep.tasks.metrics import compute_metrics
from petsweep.tracking import Tracker

log = logging.getLogger("petsweep")


@dataclass
class Progress:
    """What changes while training, beside the weights: saved with every checkpoint."""

    step: int = 0
    best_score: float | None = None
    best_step: int | None = None
    tokens: int = 0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    evals: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    history: list = field(default_factory=list)
    stopped_early: bool = False


@dataclass
class Stages:
    """How a method trains: the steps of each stage (a fresh optimizer and schedule each), and how a stage
    after the first begins (attaches what it adds; returns the groups it trains and the buffers it adds).
    One stage by default."""

    steps: list[int]
    begin: Callable[[int], tuple[list[ParamGroup], list[torch.Tensor]]] | None = None
    restart_schedule: bool = True  # each stage its own warmup and decay, or one schedule over the run

    def start(self, stage: int) -> int:
        """Completed steps when `stage` begins."""
        return sum(self.steps[:stage])

    def of_completed(self, step: int) -> int:
        """The stage whose optimizer took step `step` (0 before any step)."""
        stage = 0
        while stage + 1 < len(self.steps) and step > self.start(stage + 1):
            stage += 1
        return stage


def pick_device(trainer: TrainerConfig) -> torch.device:
    if trainer.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(trainer.device)


def use_bf16(trainer: TrainerConfig, device: torch.device) -> bool:
    if trainer.precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return trainer.precision == "bf16"


def frozen_dtype(trainer: TrainerConfig, bf16: bool) -> torch.dtype:
    """The dtype frozen backbone weights are held in: bf16 when the run computes in bf16 (`auto`)."""
    if trainer.frozen_dtype == "auto":
        return torch.bfloat16 if bf16 else torch.float32
    return torch.bfloat16 if trainer.frozen_dtype == "bf16" else torch.float32


def hold_frozen(model: nn.Module, dtype: torch.dtype, staged: bool) -> str:
    """Cast the frozen floating-point parameters to `dtype` (a frozen backbone need not sit in fp32: half the
    memory, and autocast would cast them for every matmul anyway); trained ones stay fp32. A staged method
    trains later what it freezes now, so its weights stay as they are. Returns the dtype held, as a name."""
    if staged or dtype == torch.float32:
        return "float32"
    for param in model.parameters():
        if not param.requires_grad and param.is_floating_point():
            param.data = param.data.to(dtype)
    return str(dtype).removeprefix("torch.")


def build_optimizer(
    groups: list[ParamGroup], trainer: TrainerConfig, ds_adam: bool = False
) -> torch.optim.Optimizer:
    """AdamW over the method's groups and the head's, each split into decayed matrices and undecayed
    vectors (weight decay never applies to biases and norm gains); optimizer groups carry stable names.
    `ds_adam`: DeepSpeed's CPU Adam (AdamW mode) for optimizer state offloaded to the host."""
    split = []
    for group in groups:
        for decay in (True, False):
            params = [p for p in group.params if (p.ndim >= 2) == decay]
            if params:
                split.append(
                    {
                        "name": f"{group.name}/{'decay' if decay else 'no_decay'}",
                        "params": params,
                        "lr": group.lr,
                        "weight_decay": trainer.weight_decay if decay else 0.0,
                    }
                )
    if ds_adam:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(split, adamw_mode=True)
    return torch.optim.AdamW(split)


def build_scheduler(
    optimizer, trainer: TrainerConfig, steps: int | None = None, offset: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup, then the trainer's schedule over `steps` (a stage's; the whole run by default); `offset`: the
    run's steps already taken when this optimizer starts (a stage that continues the run's schedule)."""
    total = trainer.max_steps if steps is None else steps
    warmup = int(trainer.warmup_ratio * total)

    def factor(step: int) -> float:
        step += offset
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        if trainer.schedule == "linear":
            return max(0.0, 1.0 - progress)
        if trainer.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def batch_indices(n: int, batch_size: int, seed: int, index: int) -> list[int]:
    """Example indices of micro-batch `index`: a seeded permutation per epoch, incomplete batches dropped."""
    per_epoch = max(1, n // batch_size)
    epoch, offset = divmod(index, per_epoch)
    order = np.random.default_rng([seed, 3, epoch]).permutation(n)
    return order[offset * batch_size : (offset + 1) * batch_size].tolist()


def evaluate(
    model,
    objective: Objective,
    encoded: list[dict],
    examples: list[dict],
    spec: RunSpec,
    device,
    bf16: bool,
    remap: list[int] | None = None,
):
    """Every metric of the task on `examples`; `remap[c]` renames predicted class c (a head scored on a task
    whose classes are ordered differently). Several ranks each predict an equal part and share them."""
    me = ranks.current()
    model.eval()
    with _autocast(device, bf16):
        mine = objective.predict(model, ranks.split_evenly(encoded, me), spec.trainer.eval_batch_size, device)
    model.train()
    predictions = ranks.joined(ranks.gather(mine), len(encoded)) if me.distributed else mine
    if remap is not None:
        predictions = [remap[p] for p in predictions]
    return compute_metrics(spec.task, predictions, examples)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _patience_ran_out(trainer: TrainerConfig, progress: Progress) -> bool:
    """trainer.early_stopping_patience dev evaluations have passed without a new best."""
    patience = trainer.early_stopping_patience
    if not patience or progress.best_step is None:
        return False
    return (progress.step - progress.best_step) // trainer.eval_every >= patience


def _stop_requested(me: ranks.Ranks) -> bool:
    asked = preemption.requested()
    return ranks.sum_floats([float(asked)])[0] > 0 if me.distributed else asked


def train(
    spec: RunSpec,
    run: RunDir,
    model: nn.Module,
    objective: Objective,
    data: TaskData,
    groups: list[ParamGroup],
    tracker: Tracker,
    zero: DeepSpeedConfig,
    stages: Stages | None = None,
    buffers: list[torch.Tensor] = (),
) -> dict:
    """Train, select the best dev checkpoint, score test and the train subset; returns the summary.

    `groups` are what the first stage trains; `stages` (default: one) say when later ones begin; `buffers`,
    the method's state beside its parameters, are saved and restored with them; `zero`: the DeepSpeed preset
    chosen for this run (distributed.chosen_preset). Several ranks (petsweep.ranks) each train their share of
    every global batch.
    """
    trainer, metric = spec.trainer, spec.task.metric
    stages = stages or Stages([trainer.max_steps])
    me = ranks.current()
    device = ranks.device(pick_device(trainer), me)
    bf16 = use_bf16(trainer, device)
    backbone_dtype = hold_frozen(model, frozen_dtype(trainer, bf16), len(stages.steps) > 1)
    model.to(device).train()
    objective.synced_generation = me.distributed and zero.stage == 3  # every rank steps generate together
    train_set = objective.encode(data.train)
    dev_set, test_set = objective.encode(data.dev), objective.encode(data.test)
    optimizer = build_optimizer(groups, trainer, uses_ds_adam(zero))
    scheduler = build_scheduler(optimizer, trainer, stages.steps[0] if stages.restart_schedule else None)
    stepper = make_stepper(model, optimizer, scheduler, trainer, zero, bf16, me.world)
    if zero.stage is None:  # the same trained state everywhere to start (DeepSpeed broadcasts its own)
        ranks.broadcast_tensors([p for g in groups for p in g.params] + list(buffers))
    if zero.stage == 3 and bf16:
        backbone_dtype = "bfloat16"  # DeepSpeed's bf16 mode holds every weight in bf16
    if not me.main:
        torch.manual_seed(rank_seed(spec.seed, me.rank))  # this rank's own dropout masks
    if len(stages.steps) > 1 and zero.stage is not None:
        raise ConfigError(
            "deepspeed.preset",
            zero.preset,
            f"{spec.method.config.name} trains in stages, which "
            "rebuild the optimizer mid-run; DeepSpeed engines cannot: use deepspeed=none",
        )
    stepper.keep = {id(p) for g in groups for p in g.params} | {id(b) for b in buffers}
    progress, best, stage = Progress(), None, 0

    def begin_stage(index: int) -> None:
        new_groups, new_buffers = stages.begin(index)
        stepper.keep |= {id(p) for g in new_groups for p in g.params} | {id(b) for b in new_buffers}
        new_optimizer = build_optimizer(new_groups, trainer)
        scheduler = (
            build_scheduler(new_optimizer, trainer, stages.steps[index])
            if stages.restart_schedule
            else build_scheduler(new_optimizer, trainer, offset=stages.start(index))
        )
        stepper.rebuild(new_optimizer, scheduler)
        log.info(
            "stage %d of %d begins: %s", index + 1, len(stages.steps), ", ".join(g.name for g in new_groups)
        )

    resume_from = checkpoint.latest(run.checkpoints)
    if resume_from is not None:
        while stage < stages.of_completed(checkpoint.saved_step(resume_from)):
            stage += 1
            begin_stage(stage)
        meta, best = stepper.restore(resume_from)
        progress = Progress(**{k: meta[k] for k in Progress.__dataclass_fields__ if k in meta})
        log.info("resumed from %s (step %d)", resume_from.name, progress.step)
    # rows an interrupted attempt logged after its last checkpoint (or any, when there is none)
    tracker.truncate_after(progress.step)

    reporter = StepProgress(run, trainer.max_steps, trainer.log_every, progress.step, me.main)
    first_step_at = time.time()  # start-up overhead = this minus process start (see app)
    step_times = []  # this session's step durations, for throughput estimates (not checkpointed)
    while progress.step < trainer.max_steps and not trainer.eval_only:  # eval_only: the weights as they are
        if stage + 1 < len(stages.steps) and progress.step == stages.start(stage + 1):
            stage += 1
            begin_stage(stage)
        started, step_loss = time.perf_counter(), 0.0
        for micro in range(trainer.grad_accum):
            index = progress.step * trainer.grad_accum + micro
            rows = me.share(batch_indices(len(train_set), trainer.batch_size, spec.seed, index))
            batch = objective.train_batch([train_set[i] for i in rows])
            tokens = int(batch["attention_mask"].sum())
            batch = {k: v.to(device) for k, v in batch.items()}
            with _autocast(device, bf16):
                loss = objective.loss(stepper.forward_model, batch)
            loss_sum, tokens = ranks.sum_floats([loss.item(), tokens])  # every rank sees a NaN on any
            if not math.isfinite(loss_sum):
                raise FloatingPointError(f"loss is {loss_sum / me.world} at step {progress.step + 1}")
            progress.tokens += int(tokens)
            stepper.backward(loss)
            stepper.micro_step(boundary=micro == trainer.grad_accum - 1)
            share = loss_sum / me.world / trainer.grad_accum  # this micro-batch's part of the step's loss
            progress.loss_sum += share
            step_loss += share
        progress.step += 1
        progress.loss_count += 1
        reporter.step(progress.step, step_loss)
        step_times.append(time.perf_counter() - started)
        progress.train_time_s += step_times[-1]

        if progress.step % trainer.eval_every == 0 or progress.step == trainer.max_steps:
            row = {
                "step": progress.step,
                "train_loss": progress.loss_sum / progress.loss_count,
                "lr": stepper.last_lr(),
            }
            progress.loss_sum, progress.loss_count = 0.0, 0
            if dev_set:
                eval_started = time.perf_counter()
                scores = evaluate(stepper.forward_model, objective, dev_set, data.dev, spec, device, bf16)
                progress.eval_time_s += time.perf_counter() - eval_started
                progress.evals += 1
                row.update({f"dev_{k}": v for k, v in scores.items()})
                last_stage = stage == len(stages.steps) - 1  # the model a run reports has every stage
                if last_stage and (progress.best_score is None or scores[metric] > progress.best_score):
                    progress.best_score, progress.best_step = scores[metric], progress.step
                    best = stepper.trainable_state()
                reporter.evaluated(scores[metric], progress.best_score)
                if last_stage and _patience_ran_out(trainer, progress):
                    log.info(
                        "early stop at step %d: no better dev %s in %d evaluations since step %d",
                        progress.step,
                        metric,
                        trainer.early_stopping_patience,
                        progress.best_step,
                    )
                    progress.stopped_early = True
            progress.history.append(row)
            tracker.log(row)
            log.info(
                "step %d  %s", progress.step, "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "step")
            )
            if progress.stopped_early:
                break
        if progress.step % trainer.save_every == 0 and progress.step < trainer.max_steps:
            stepper.save(run.checkpoints, progress.step, best, vars(progress))
        # SLURM asked us to stop (perhaps while this step evaluated or saved): saving a step twice is a no-op.
        # Ranks may get the signal a step apart: they agree, so that all save the same step.
        if _stop_requested(me) and progress.step < trainer.max_steps:
            stepper.save(run.checkpoints, progress.step, best, vars(progress))
            log.info(
                "saved a checkpoint at step %d on the cluster's signal; handing over to requeue",
                progress.step,
            )
            preemption.hand_over(main=me.main)

    reporter.close()
    if best is not None:
        stepper.load_trainable(best)
    forward = stepper.forward_model
    final_started = time.perf_counter()
    test_scores = evaluate(forward, objective, test_set, data.test, spec, device, bf16)
    train_scores = evaluate(
        forward, objective, objective.encode(data.train_eval), data.train_eval, spec, device, bf16
    )
    final_eval_s = time.perf_counter() - final_started
    return {
        "score": test_scores[metric],
        "metrics": test_scores,
        "train_subset_metrics": train_scores,
        "train_subset_score": train_scores[metric],
        "best_step": progress.best_step or progress.step,
        "best_dev_score": progress.best_score,
        "steps": progress.step,
        "stopped_early": progress.stopped_early,
        "train_time_s": progress.train_time_s,
        "dev_eval_time_s": progress.eval_time_s,  # every dev evaluation while training (plans cost it)
        "dev_evals": progress.evals,
        "final_eval_time_s": final_eval_s,  # test split and train subset at the end
        "tokens": progress.tokens,
        "tokens_per_s": progress.tokens / progress.train_time_s if progress.train_time_s else None,
        "step_time_s": statistics.median(step_times[2:] or step_times) if step_times else None,
        "peak_memory_mb": max(rank_peaks := ranks.gather(_peak_memory_mb(device))),
        "rank_peak_memory_mb": rank_peaks,
        "device": str(device),
        "precision": "bf16" if bf16 else "fp32",
        "deepspeed": zero.preset,
        "ranks": me.world,
        "shards": stepper.shards(),
        "backbone_dtype": backbone_dtype,
        "first_step_at": first_step_at,
        "best_weights": best if best is not None else stepper.trainable_state(),
    }
