"""The training loop, read top to bottom: optimizer, schedule, seeded batches, eval, checkpoints, resume.

Determinism: batch order is a pure function of (seed, step), and a checkpoint holds everything that
changes while training (weights, optimizer, scheduler, RNG, counters), so a run resumed from any
checkpoint ends exactly where the uninterrupted run does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from petsweep.methods.base import ParamGroup
from petsweep.model.objectives import Objective
from petsweep.records.status import RunDir
from petsweep.spec.config import DeepSpeedConfig, RunSpec, TrainerConfig
from petsweep.spec.errors import STOP, ConfigError, RunCancelled
from petsweep.tasks import TaskData
from petsweep.tasks.metrics import compute_metrics
from petsweep.train import checkpoint, movement, preemption, ranks, resources
from petsweep.train.distributed import make_stepper, rank_seed, uses_ds_adam
from petsweep.train.progress import StepProgress
from petsweep.train.tracking import Tracker

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
    keep_state: bool = False  # parameters that train on keep their optimizer state (moments, step counts)

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
    """The device a run trains on (spec.config.DEVICES); `cuda` where this process sees no CUDA device is
    refused in one line (it was a traceback from the first tensor moved there, after the run was claimed and
    recorded FAILED)."""
    if trainer.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if trainer.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device", "cuda", "this machine shows no CUDA device; choose auto or cpu")
    return torch.device(trainer.device)


def use_bf16(trainer: TrainerConfig, device: torch.device) -> bool:
    if trainer.precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return trainer.precision == "bf16"


def frozen_dtype(trainer: TrainerConfig, bf16: bool) -> torch.dtype:
    """The dtype frozen backbone weights are held in. `auto`: bf16 when the run is asked to compute in bf16
    (precision=bf16), else fp32, so precision=auto keeps the fp32 frozen weights runs had before frozen_dtype
    existed (identity.py hashes auto as what it resolves to here)."""
    if trainer.frozen_dtype == "auto":
        return torch.bfloat16 if trainer.precision == "bf16" and bf16 else torch.float32
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
                        "eps": group.eps,
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


def _patience_ran_out(trainer: TrainerConfig, progress: Progress) -> bool:
    """trainer.early_stopping_patience dev evaluations have passed without a new best."""
    patience = trainer.early_stopping_patience
    if not patience or progress.best_step is None:
        return False
    return (progress.step - progress.best_step) // trainer.eval_every >= patience


def _stop_requested(me: ranks.Ranks) -> bool:
    asked = preemption.requested()
    return ranks.sum_floats([float(asked)])[0] > 0 if me.distributed else asked


class Training:
    """One run's training, a step at a time: what `train` drives alone, and what fused training
    (petsweep/train/fused.py) drives for several runs that share one frozen backbone.

    A step is begin_step(); per micro-batch: micro_batch(), the loss, account(), the backward and
    stepper.micro_step(); then end_step(), which evaluates, saves and answers the cluster's signal on this
    run's own schedule. `finish()` selects the best dev checkpoint and scores test and the train subset.
    """

    def __init__(
        self,
        spec: RunSpec,
        run: RunDir,
        model: nn.Module,
        objective: Objective,
        data: TaskData,
        groups: list[ParamGroup],
        tracker: Tracker,
        zero: DeepSpeedConfig,
        decided: tuple[str, bool],
        stages: Stages | None = None,
        buffers: list[torch.Tensor] = (),
    ):
        """`decided`: the run's device ("cpu", "cuda": each rank takes its own GPU of it) and whether it
        computes in bf16, as the run decided them once (petsweep.run.app.decide_device)."""
        trainer = spec.trainer
        self.spec, self.run, self.objective, self.data, self.tracker = spec, run, objective, data, tracker
        self.stages = stages or Stages([trainer.max_steps])
        self.me = me = ranks.current()
        self.device = device = ranks.device(torch.device(decided[0]), me)
        self.bf16 = decided[1]
        self.backbone_dtype = hold_frozen(model, frozen_dtype(trainer, self.bf16), len(self.stages.steps) > 1)
        model.to(device).train()
        objective.synced_generation = me.distributed and zero.stage == 3  # every rank steps generate together
        self.train_set = objective.encode(data.train)
        self.dev_set, self.test_set = objective.encode(data.dev), objective.encode(data.test)
        optimizer = build_optimizer(groups, trainer, uses_ds_adam(zero))
        first = self.stages.steps[0] if self.stages.restart_schedule else None
        scheduler = build_scheduler(optimizer, trainer, first)
        self.zero = zero
        self.stepper = make_stepper(model, optimizer, scheduler, trainer, zero, self.bf16, me.world)
        if zero.stage is None:  # the same trained state everywhere to start (DeepSpeed broadcasts its own)
            ranks.broadcast_tensors([p for g in groups for p in g.params] + list(buffers))
        if zero.stage == 3 and self.bf16:
            self.backbone_dtype = "bfloat16"  # DeepSpeed's bf16 mode holds every weight in bf16
        if not me.main:
            torch.manual_seed(rank_seed(spec.seed, me.rank))  # this rank's own dropout masks
        self.stepper.keep = {id(p) for g in groups for p in g.params} | {id(b) for b in buffers}
        self.progress, self.best, self.stage = Progress(), None, 0
        self._resume()
        alone = me.world == 1 and zero.stage is None and len(self.stages.steps) == 1
        self.pet_initial = movement.initial(  # where the method's parameters start (pet_moved)
            run.path, groups, fresh=self.progress.step == 0, enabled=alone and not trainer.eval_only
        )
        # rows an interrupted attempt logged after its last checkpoint (or any, when there is none)
        tracker.truncate_after(self.progress.step)
        self.reporter = StepProgress(run, trainer.max_steps, trainer.log_every, self.progress.step, me.main)
        self.first_step_at = time.time()  # start-up overhead = this minus process start (see app)
        self.step_times: list[float] = []  # this session's step durations (not checkpointed)
        self._started, self._step_loss = 0.0, 0.0

    def _begin_stage(self, index: int) -> None:
        trainer, stages = self.spec.trainer, self.stages
        new_groups, new_buffers = stages.begin(index)
        self.stepper.keep |= {id(p) for g in new_groups for p in g.params} | {id(b) for b in new_buffers}
        new_optimizer = build_optimizer(new_groups, trainer)
        if stages.keep_state:  # as an optimizer never rebuilt would have it: fresh state for new tensors only
            old = self.stepper.optimizer
            for group in new_optimizer.param_groups:
                for param in group["params"]:
                    if param in old.state:
                        new_optimizer.state[param] = old.state[param]
        scheduler = (
            build_scheduler(new_optimizer, trainer, stages.steps[index])
            if stages.restart_schedule
            else build_scheduler(new_optimizer, trainer, offset=stages.start(index))
        )
        self.stepper.rebuild(new_optimizer, scheduler)
        log.info(
            "stage %d of %d begins: %s", index + 1, len(stages.steps), ", ".join(g.name for g in new_groups)
        )

    def _resume(self) -> None:
        resume_from = checkpoint.latest(self.run.checkpoints)
        if resume_from is None:
            return
        while self.stage < self.stages.of_completed(checkpoint.saved_step(resume_from)):
            self.stage += 1
            self._begin_stage(self.stage)
        meta, self.best = self.stepper.restore(resume_from)
        self.progress = Progress(**{k: meta[k] for k in Progress.__dataclass_fields__ if k in meta})
        log.info("resumed from %s (step %d)", resume_from.name, self.progress.step)

    @property
    def finished(self) -> bool:
        """No step left: max_steps reached, stopped early, or an eval_only run (the weights as they are)."""
        trainer = self.spec.trainer
        return self.progress.step >= trainer.max_steps or trainer.eval_only or self.progress.stopped_early

    def begin_step(self) -> None:
        if STOP.reason is not None:  # a stop signal whose raise was lost (errors.StopRequest)
            raise RunCancelled(STOP.reason)
        stages = self.stages
        if self.stage + 1 < len(stages.steps) and self.progress.step == stages.start(self.stage + 1):
            self.stage += 1
            self._begin_stage(self.stage)
        self._started, self._step_loss = time.perf_counter(), 0.0

    def micro_batch(self, micro: int) -> tuple[dict[str, torch.Tensor], int]:
        """This rank's share of micro-batch `micro` of the next step, on the device, and its tokens."""
        trainer = self.spec.trainer
        index = self.progress.step * trainer.grad_accum + micro
        rows = self.me.share(batch_indices(len(self.train_set), trainer.batch_size, self.spec.seed, index))
        batch = self.objective.train_batch([self.train_set[i] for i in rows])
        tokens = int(batch["attention_mask"].sum())
        return {k: v.to(self.device) for k, v in batch.items()}, tokens

    def autocast(self):
        return _autocast(self.device, self.bf16)

    def account(self, loss: float, tokens: int) -> None:
        """A micro-batch's loss and tokens, summed over ranks: every rank fails on a NaN on any."""
        me, grad_accum = self.me, self.spec.trainer.grad_accum
        loss_sum, tokens = ranks.sum_floats([loss, tokens])
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"loss is {loss_sum / me.world} at step {self.progress.step + 1}")
        self.progress.tokens += int(tokens)
        share = loss_sum / me.world / grad_accum  # this micro-batch's part of the step's loss
        self.progress.loss_sum += share
        self._step_loss += share

    def end_step(self, took: float | None = None) -> None:
        """The step is taken: count it, evaluate and save on this run's schedule, answer SLURM's signal.
        `took`: the step's duration where the caller timed it (a fused group's shared step, which must not
        count the evaluations of the members that ended their steps before this one)."""
        progress, trainer = self.progress, self.spec.trainer
        progress.step += 1
        progress.loss_count += 1
        self.reporter.step(progress.step, self._step_loss)
        if self.reporter.last is not None and self.reporter.last["step"] == progress.step:  # every log_every
            self.tracker.log_train(progress.step, self.reporter.last["train_loss"], self.stepper.last_lr())
        self.step_times.append(time.perf_counter() - self._started if took is None else took)
        progress.train_time_s += self.step_times[-1]
        if progress.step % trainer.eval_every == 0 or progress.step == trainer.max_steps:
            self._evaluate_dev()
            if progress.stopped_early:
                return
        if progress.step % trainer.save_every == 0 and progress.step < trainer.max_steps:
            self.stepper.save(self.run.checkpoints, progress.step, self.best, vars(progress))
        # SLURM asked us to stop (perhaps while this step evaluated or saved): saving a step twice is a no-op.
        # Ranks may get the signal a step apart: they agree, so that all save the same step.
        if _stop_requested(self.me) and progress.step < trainer.max_steps:
            self.stepper.save(self.run.checkpoints, progress.step, self.best, vars(progress))
            log.info(
                "saved a checkpoint at step %d on the cluster's signal; handing over to requeue",
                progress.step,
            )
            preemption.hand_over(main=self.me.main)

    def _evaluate_dev(self) -> None:
        progress, spec, stages = self.progress, self.spec, self.stages
        metric = spec.task.metric
        row = {"step": progress.step, "train_loss": progress.loss_sum / progress.loss_count}
        row["lr"] = self.stepper.last_lr()
        progress.loss_sum, progress.loss_count = 0.0, 0
        if self.dev_set:
            eval_started = time.perf_counter()
            model = self.stepper.forward_model
            scores = evaluate(
                model, self.objective, self.dev_set, self.data.dev, spec, self.device, self.bf16
            )
            progress.eval_time_s += time.perf_counter() - eval_started
            progress.evals += 1
            row.update({f"dev_{k}": v for k, v in scores.items()})
            last_stage = self.stage == len(stages.steps) - 1  # the model a run reports has every stage
            if last_stage and (progress.best_score is None or scores[metric] > progress.best_score):
                progress.best_score, progress.best_step = scores[metric], progress.step
                self.best = self.stepper.trainable_state()
            self.reporter.evaluated(scores[metric], progress.best_score)
            if last_stage and _patience_ran_out(spec.trainer, progress):
                log.info(
                    "early stop at step %d: no better dev %s in %d evaluations since step %d",
                    progress.step,
                    metric,
                    spec.trainer.early_stopping_patience,
                    progress.best_step,
                )
                progress.stopped_early = True
        progress.history.append(row)
        self.tracker.log(row)
        log.info(
            "step %d  %s", progress.step, "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "step")
        )

    def finish(self) -> dict:
        """The best dev checkpoint's weights back in place, test and train-subset scores; the summary."""
        spec, progress, device, bf16 = self.spec, self.progress, self.device, self.bf16
        self.reporter.close()
        if self.best is not None:
            self.stepper.load_trainable(self.best)
        forward, objective, data = self.stepper.forward_model, self.objective, self.data
        final_started = time.perf_counter()
        test_scores = evaluate(forward, objective, self.test_set, data.test, spec, device, bf16)
        train_eval = objective.encode(data.train_eval)
        train_scores = evaluate(forward, objective, train_eval, data.train_eval, spec, device, bf16)
        final_eval_s = time.perf_counter() - final_started
        probe, probe_set = (self.dev_set, data.dev) if self.dev_set else (train_eval, data.train_eval)

        def predict():
            forward.eval()
            with _autocast(device, bf16):
                out = objective.predict(forward, probe, spec.trainer.eval_batch_size, device)
            forward.train()
            return out

        pet_movement = movement.measure(self.pet_initial, predict) if probe_set else None
        if self.pet_initial is not None:
            movement.forget(self.run.path)
        metric, step_times = spec.task.metric, self.step_times
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
            "peak_memory_mb": max(rank_peaks := ranks.gather(resources.peak_memory_mb(device))),
            "rank_peak_memory_mb": rank_peaks,
            "device": str(device),
            "precision": "bf16" if bf16 else "fp32",
            "deepspeed": self.zero.preset,
            "ranks": self.me.world,
            "shards": self.stepper.shards(),
            "backbone_dtype": self.backbone_dtype,
            "first_step_at": self.first_step_at,
            "best_weights": self.best if self.best is not None else self.stepper.trainable_state(),
            "pet_movement": pet_movement,
            "pet_moved": pet_movement["moved"] if pet_movement else None,
        }


def train_alone(training: Training) -> dict:
    """Train one run to its end (each micro-batch's loss, backward, the optimizer at the step's boundary);
    returns Training.finish()'s summary. Several ranks (petsweep.train.ranks) each train their share of every
    global batch."""
    stepper, objective, grad_accum = training.stepper, training.objective, training.spec.trainer.grad_accum
    while not training.finished:
        training.begin_step()
        for micro in range(grad_accum):
            batch, tokens = training.micro_batch(micro)
            with training.autocast():
                loss = objective.loss(stepper.forward_model, batch)
            training.account(loss.item(), tokens)
            stepper.backward(loss)
            stepper.micro_step(boundary=micro == grad_accum - 1)
        training.end_step()
    return training.finish()
