"""One run, start to record: validate, claim the run dir, build, train, write result.json.

A COMPLETED run is never retrained (its record is printed); a RUNNING run whose process died, or a FAILED
one, is run again and continues from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from petsweep.model.backbones import load_pretrained
from petsweep.model.init_from import load_into, resolve_source
from petsweep.model.objectives import make_objective
from petsweep.model.params import HEAD_GROUP, attach_method, begin_stage, check_on_meta
from petsweep.model.resolve import resolve_run, resolved_run, semantic_config
from petsweep.records import index, provenance, retention
from petsweep.records.record import RunRecord
from petsweep.records.status import (
    CANCELLED,
    COMPLETED,
    FAILED,
    LAUNCHED_AT_ENV,
    QUEUED,
    RUNNING,
    RunDir,
    current_slurm_job,
    sweep_cancelled,
    write_atomic,
    write_json,
)
from petsweep.run import spawn
from petsweep.run.rehash import identity_check, reusable_result
from petsweep.spec.config import RunSpec
from petsweep.spec.errors import STOP, STOP_SIGNALS, PetsweepError, RunCancelled
from petsweep.spec.identity import run_slug, sha256_file
from petsweep.spec.resolved import ResolvedRun
from petsweep.spec.shape import RunShape
from petsweep.spec.typecheck import plain
from petsweep.tasks import prepare_task
from petsweep.train import preemption, ranks, resources
from petsweep.train.checkpoint import save_file
from petsweep.train.distributed import check_ranks, chosen_preset, forget_sharded_loading, sharded_loading
from petsweep.train.seeding import seed_everything
from petsweep.train.tracking import NullTracker, Tracker, wandb_summary

if TYPE_CHECKING:
    from petsweep.methods.base import Attached
    from petsweep.model.objectives import Objective
    from petsweep.model.params import ParamCounts
    from petsweep.spec.config import DeepSpeedConfig
    from petsweep.tasks import TaskData
    from petsweep.train.loop import Stages

log = logging.getLogger("petsweep")


def run(cfg: DictConfig, claim_token: str | None = None) -> dict:
    """Validate and run the composed config `cfg` in this process (execute); returns its result record."""
    return execute(resolved_run(cfg), claim_token)


def execute(resolved: ResolvedRun, claim_token: str | None = None) -> dict:
    """Run (or resume, or just report) the run that `resolved` describes; returns its result record. The one
    way a run executes, in any process: run.py, a warm worker, a SLURM task, a rank child.

    Args:
        claim_token: the QUEUED claim a cluster job was submitted under (launchers.slurm), so the job can take
            over its own queue entry.

    A run of several ranks is started here as that many processes (petsweep.run.spawn), unless this process is
    already one of them (a SLURM task, or a spawned rank); rank 0 owns the run's records.
    """
    checked = before_claim(resolved)
    spec, cfg, run_path, result = checked.spec, checked.cfg, checked.run_path, checked.reused
    if result is not None:
        if ranks.current().main:
            print(summary_text(result, run_path, reused=True))
            keep_only(run_path, spec.trainer.keep)  # a kill between its record and its pruning left files
        return result
    resolved, init_source, me, world = checked.resolved, checked.init_source, ranks.current(), checked.world
    if world > 1 and not me.distributed:
        return spawn.run_ranks(resolved, world, run_path, _threads_per_rank(spec, world))
    import torch

    resolved = decide_device(resolved, spec)
    try:
        joined = ranks.init(me, ranks.device(torch.device(resolved.device), me))
    except Exception as err:  # the ranks never met: say so on the run this job was submitted for
        spawn.note_failure(err)
        status = run_path.status() or {}
        if me.main and claim_token is not None and status.get("token") == claim_token:
            run_path.set_status(FAILED, error=f"rank {me.rank} could not join the others: {err}"[:500])
        raise
    try:
        return _run_as_rank(spec, cfg, resolved, run_path, init_source, claim_token, me)
    finally:
        if joined:  # a one-rank DeepSpeed run keeps its group: DeepSpeed caches it for the next run
            ranks.shutdown()


@dataclass
class Checked:
    """A run that passed the checks made before it is claimed (before_claim); `reused`: its COMPLETED record,
    where it has one (then nothing else was checked)."""

    spec: RunSpec
    cfg: DictConfig
    resolved: ResolvedRun  # device decided; precision too, where deciding it started no CUDA
    run_path: RunDir
    reused: dict | None = None
    init_source: Path | None = None
    world: int = 1  # the ranks its process starts (RunShape.ranks_here)


def before_claim(resolved: ResolvedRun) -> Checked:
    """Every check made before a run is claimed, in one place for every way a run starts (execute, a fused
    group's member): its config typed, a COMPLETED record answering first, then the method on this backbone
    (meta device), frozen_dtype=bf16 against the decided precision, the DeepSpeed preset chosen here
    (`auto` resolved) against a staged method, init_from's source, and the ranks. A refusal raises the
    PetsweepError whose one line a solo run prints; nothing is claimed or written."""
    from petsweep.spec.config import check_staged_preset

    spec, cfg = typed(resolved)  # every config check happens here, before anything is written
    run_path = RunDir(Path(resolved.run_dir))
    result = reusable_result(run_path.path)  # a COMPLETED record of this identity (not one of an older rule)
    if result is not None:
        return Checked(spec, cfg, resolved, run_path, reused=result)
    # the check of frozen_dtype=bf16 reads the precision; else it is asked where the run trains
    trainer = spec.trainer
    asks = trainer.frozen_dtype == "bf16" and trainer.precision == "auto"
    resolved = decide_device(resolved.with_config(plain(cfg)), spec, ask_cuda=asks)
    counts = check_on_meta(spec)  # the method fits this backbone
    _check_bf16_compute(spec, resolved)
    chosen = chosen_preset(spec.deepspeed, counts.total_params, counts.trainable_params)
    check_staged_preset(spec.method, trainer.max_steps, chosen)  # `auto` as it resolves on this machine
    init_source = (
        resolve_source(spec.method.config.init_from, spec.runs_root) if spec.method.config.init_from else None
    )
    me, world = ranks.current(), _ranks_wanted(spec)
    _check_counted_ranks(cfg, me.world if me.distributed else world)
    check_ranks(spec, me.world if me.distributed else world, counts.total_params, counts.trainable_params)
    return Checked(spec, cfg, resolved, run_path, init_source=init_source, world=world)


def typed(resolved: ResolvedRun) -> tuple[RunSpec, DictConfig]:
    """The run's typed spec and its config as a DictConfig (config.yaml, W&B): the one validation in this
    process, none where the process that resolved it typed it already (run.py's preflight: its config is the
    one the spec recorded). The config is the one resolve_run records, with what `budget` resolved to written
    in, as the run's config.yaml has always read."""
    if resolved.typed is not None:
        return resolved.typed, OmegaConf.create(resolved.config)
    spec = resolve_run(resolved.config)
    return spec, OmegaConf.create(spec.config)


def decide_device(resolved: ResolvedRun, spec: RunSpec, ask_cuda: bool = True) -> ResolvedRun:
    """Device and precision, decided once for the run on the machine that executes it (kept where a parent
    process decided them: a rank child); every later reader (the checks, the ranks' rendezvous, sharded
    loading, importance, Training) reads them from the spec. `ask_cuda=False`: precision=auto on a GPU is
    left undecided, since asking CUDA whether it computes in bf16 starts CUDA in this process (the parent of
    a multi-rank run trains on no GPU); the process that trains decides it."""
    from petsweep.train.loop import pick_device, use_bf16

    device = resolved.device or pick_device(spec.trainer).type
    precision = resolved.precision
    if precision is None and (ask_cuda or spec.trainer.precision != "auto" or device != "cuda"):
        import torch

        precision = "bf16" if use_bf16(spec.trainer, torch.device(device)) else "fp32"
    return resolved.decided(device, precision)


def _run_as_rank(
    spec, cfg, resolved: ResolvedRun, run_path: RunDir, init_source, claim_token, me: ranks.Ranks
) -> dict:
    previous = cancel_on_sigterm()  # before the claim: `petsweep cancel`'s SIGTERM must find its handler
    try:
        refused = ranks.from_main(lambda: claim_run(run_path, cfg, claim_token))
    except RunCancelled as err:  # stopped while claiming: a claim already written is this process's to end
        cancel_own_claim(run_path, err, me)
        restore_signals(previous)
        raise
    except Exception as err:  # a rank that failed in the claim's broadcast (review -114)
        spawn.note_failure(err)
        raise
    if refused:
        raise PetsweepError(refused)
    handler = log_to_run(run_path, me)
    preemption.install()
    try:
        stop_if_sweep_cancelled(run_path)
        with run_path.heartbeat() if me.main else contextlib.nullcontext():
            result = _execute(spec, cfg, resolved, run_path, init_source, me)
    except BaseException as err:
        spawn.note_failure(err)  # when and why, where a parent spawned the ranks: it names the first to fail
        if not me.main:
            raise
        if isinstance(err, preemption.HandedOver):  # requeued: it resumes from the checkpoint just saved
            run_path.set_status(
                QUEUED, slurm_job_id=current_slurm_job(), error="requeued on the cluster's signal"
            )
            raise
        record_failure(run_path, err, traceback.format_exc())
        raise
    finally:
        forget_sharded_loading()
        logging.getLogger("petsweep").removeHandler(handler)
        restore_signals(previous)
    if me.main:
        try:
            record_completed(run_path, result, spec.trainer.keep)
        except OSError as err:  # result.json on a full disk: not COMPLETED, and said so
            record_failure(run_path, err, traceback.format_exc())
            raise
    return result


def record_failure(run_path: RunDir, err: BaseException, trace: str) -> bool:
    """FAILED (CANCELLED when `petsweep cancel` stopped it) with the one-line error; the traceback in
    error.txt; returns whether the status was written. Never raises: where the status cannot be written (a
    full or read-only disk) the run stays RUNNING under this process, which `petsweep status` and the next
    sweep then see as INTERRUPTED once the process is gone (a warm worker exits: worker.stands_behind_a_run),
    and one line says so."""
    state = CANCELLED if isinstance(err, RunCancelled) else FAILED
    try:
        run_path.set_status(state, error=f"{type(err).__name__}: {err}")
    except OSError as why:
        with contextlib.suppress(OSError):
            print(
                f"error: could not record {run_path.path.name} {state} ({why.strerror}); "
                "it shows INTERRUPTED and is run again by the next sweep",
                file=sys.stderr,
                flush=True,
            )
        return False
    with contextlib.suppress(OSError):
        write_atomic(run_path.path / "error.txt", trace)
    if state == CANCELLED:
        err.recorded = True  # its one line says so (errors.report_user_error); a stop before a claim did not
    return True


def cancel_own_claim(run_path: RunDir, err: RunCancelled, me: ranks.Ranks) -> None:
    """A signal (petsweep cancel right after the claim, Ctrl-C) that lands inside the claim: where the
    claim is written (RUNNING under this process), the run records CANCELLED instead of reading RUNNING."""
    status = run_path.status() or {}
    if me.main and status.get("state") == RUNNING and status.get("pid") == os.getpid():
        record_failure(run_path, err, traceback.format_exc())


def record_completed(run_path: RunDir, result: dict, keep: str | None = None) -> None:
    """result.json, then COMPLETED (a reader that sees COMPLETED finds the record), and the summary; then,
    never before, what `trainer.keep` (`keep`) does not keep is removed (every way a run ends passes here:
    alone, a fused group's member, rank 0 of several)."""
    write_json(run_path.result_file, result)
    run_path.set_status(COMPLETED, check=identity_check)  # its index line holds the identity check
    print(summary_text(result, run_path), flush=True)
    keep_only(run_path, keep)


def keep_only(run_path: RunDir, keep: str | None) -> None:
    """Prune a COMPLETED run to `trainer.keep` (petsweep/records/retention.py). A failure leaves the run
    COMPLETED with more files than asked, and says so in one line (`petsweep prune` finishes it). A prune
    moves the run dir's mtime, which makes its COMPLETED index line stale (R37 F7: every such run was read
    from its files by the next status and collect): the line is written again for the files as they are."""
    before = index.signature(str(run_path.path))
    try:
        retention.apply(run_path.path, keep)
    except OSError as err:
        log.warning("petsweep: could not prune %s to trainer.keep=%s: %s", run_path.path.name, keep, err)
    if index.signature(str(run_path.path)) != before:
        index.record(run_path, check=identity_check)


def optimized_value(result: dict, name: str) -> float:
    """The number a Hydra sweeper optimises, from a run's record (`optimized_metric`, see conf/config.yaml);
    a run without a dev split returns its test score for `dev`."""
    if name == "dev":
        best = result.get("best_dev_score")
        return float(best if best is not None else result["score"])
    if name == "test":
        return float(result["score"])
    if name == "train_subset":
        return float(result["train_subset_score"])
    return float(result["metrics"][name.removeprefix("test/")])


def _check_bf16_compute(spec: RunSpec, resolved: ResolvedRun) -> None:
    """frozen_dtype=bf16 needs bf16 compute: precision=auto resolves to fp32 on a device without it (train.py
    use_bf16), and fp32 activations meeting bf16 weights crashed after the claim (the explicit precision=fp32
    is refused in config.TrainerConfig)."""
    from petsweep.spec.errors import ConfigError

    trainer = spec.trainer
    if trainer.frozen_dtype == "bf16" and trainer.precision == "auto":
        if resolved.precision != "bf16":
            raise ConfigError(
                "trainer.frozen_dtype",
                "bf16",
                f"needs bf16 compute, which trainer.precision=auto does not give on {resolved.device}: "
                "set trainer.precision=bf16, or trainer.frozen_dtype to fp32 or auto",
            )


def _check_counted_ranks(cfg: DictConfig, world: int) -> None:
    """With dropout each rank draws its own masks, so a run's id counts its ranks (identity.ranks_counted: the
    world of spec/shape.py): a run that would start another number is refused."""
    from petsweep.spec.errors import ConfigError
    from petsweep.spec.identity import ranks_counted

    counted = ranks_counted(plain(cfg))
    if counted is not None and counted != world:
        raise ConfigError(
            "trainer.ranks",
            cfg.trainer.ranks,
            f"this run would start {world} rank(s) but its id counts {counted} (backbone.resources.gpus x "
            f"nodes, and dropout draws masks per rank); set trainer.ranks={world}, or backbone.dropout=0",
        )


def _ranks_wanted(spec: RunSpec) -> int:
    """The ranks this process starts: the run's shape (spec/shape.py) on the GPUs it sees, the one fact of
    this machine that the rule leaves to the process (none for trainer.device=cpu)."""
    import torch

    visible = torch.cuda.device_count() if spec.trainer.device != "cpu" else 0
    return RunShape.of(spec.backbone.resources, spec.trainer.ranks).ranks_here(visible)


def _threads_per_rank(spec: RunSpec, world: int) -> int | None:
    """The run's CPU threads shared among its ranks (a CPU run of G ranks on the cores one run was given)."""
    total = spec.trainer.num_threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or os.cpu_count() or 1
    return max(1, total // world)


def stop_if_sweep_cancelled(run_path: RunDir) -> None:
    """`petsweep cancel` after the local launch of this run began: stop before any work (checked after the
    claim, so a cancel that scanned the sweep before the claim is still seen here)."""
    launched_at = os.environ.get(LAUNCHED_AT_ENV)
    if launched_at and sweep_cancelled(run_path.path.parent, float(launched_at)):
        raise RunCancelled("the sweep was cancelled (petsweep cancel) before this run started")


def cancel_on_sigterm() -> dict:
    """SIGTERM (petsweep cancel, scancel) and SIGINT (Ctrl-C) stop the run the same way: RunCancelled, so it
    records CANCELLED in one line and a rerun resumes it (Ctrl-C was a FAILED run and a traceback). Returns
    the handlers it replaced, for restore_signals; {} where signals cannot be set (not the main thread)."""

    def handler(signum, frame):
        STOP.reason = f"stopped by {STOP_SIGNALS[signum]}"  # raised again at a step boundary if this is lost
        raise RunCancelled(STOP.reason)

    if STOP.reason is not None:  # a stop before this run's handler, its raise dropped: the run does not start
        raise RunCancelled(STOP.reason)
    previous = {}
    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        return {}
    return previous


def restore_signals(previous: dict) -> None:
    """The handlers cancel_on_sigterm replaced, back; the run's stop is its own (a warm worker's next run
    starts without it)."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    STOP.reason = None


def claim_run(run_path: RunDir, cfg: DictConfig, owner: str | None) -> str | None:
    """RUNNING, unless another live process (or a queued cluster job) has the run; checked and written
    atomically. Returns why the run was refused, or None."""
    if run_path.claim(RUNNING, owner=owner) is None:
        status = run_path.status() or {}
        where = (
            f"job {run_path.slurm_job(status)}"
            if status.get("state") == QUEUED
            else f"process {status.get('pid')} on {status.get('host')}"
        )
        return f"run {run_path.path} is already {status.get('state')} ({where}); not started twice"
    write_atomic(run_path.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return None


def console_logging() -> None:
    """The console logging run.py has under Hydra (hydra/job_logging: stdout): messages on stdout, INFO."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)


def log_to_run(run_path: RunDir, me: ranks.Ranks) -> logging.Handler:
    """train.log in the run dir, written by rank 0; the other ranks log warnings and errors to stderr only."""
    logger = logging.getLogger("petsweep")
    logger.setLevel(logging.INFO if me.main else logging.WARNING)
    if not logging.getLogger().handlers and not logger.handlers:  # run.py has Hydra's console handler
        logger.addHandler(logging.StreamHandler(sys.stderr))
    if not me.main:
        return logging.NullHandler()
    handler = logging.FileHandler(run_path.path / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return handler


@dataclass
class Prepared:
    """A run built and ready to train (prepare): its data, the model with the method attached, its counts,
    tracker and provenance so far; what training and the record (record) need."""

    spec: RunSpec
    cfg: DictConfig
    resolved: ResolvedRun  # its id, and the device and precision decided for it
    run_path: RunDir
    me: ranks.Ranks
    started: float  # when preparing began: wall_time_s counts from here
    prov: dict
    data: TaskData
    zero: DeepSpeedConfig  # the preset chosen for this run
    sharded: object | None  # HF's ZeRO-3 loading context, kept alive while the run trains
    objective: Objective
    attached: Attached
    counts: ParamCounts
    initialised: dict | None  # what init_from loaded
    stages: Stages | None
    tracker: Tracker | NullTracker
    load_s: float


def prepare(
    spec: RunSpec, cfg, resolved: ResolvedRun, run_path: RunDir, init_source: Path | None, me: ranks.Ranks
) -> Prepared:
    """Seed, read the data, load the backbone, attach the method: everything before the first step."""
    started = time.time()
    if spec.trainer.num_threads:
        import torch

        torch.set_num_threads(spec.trainer.num_threads)
    # before seeding: the first meta-device build in a process draws from the global RNG (it is cached after)
    meta = check_on_meta(spec)
    prov = provenance.collect(spec.seed)
    prov["overrides"] = resources.run_overrides()  # the run's own, where argv is a worker's
    prov["seeds"] = seed_everything(spec.seed)  # before the backbone, its head and the PET modules exist
    prov["replaces"] = provenance.earlier_attempts(run_path.path)  # runs invalidated after a fix
    if me.main:
        write_json(run_path.path / "provenance.json", prov)
        drift = (prov.get("environment") or {}).get("differs_from_lock")
        if drift:  # the numbers come from other code than the lock's: say so where the run's log is read
            log.warning("environment differs from requirements.lock: %s (provenance.json)", ", ".join(drift))

    data = prepare_task(spec.task, spec.seed)
    zero = chosen_preset(spec.deepspeed, meta.total_params, meta.trainable_params)
    # kept alive until training ends: HF asks it while loading
    sharded = _sharded_loading(spec, resolved, zero, me)
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    objective = make_objective(spec.backbone.family, spec.task, data, tokenizer)
    importance = _importance(spec, resolved, objective, data, run_path)
    stage_steps = spec.method.stage_steps(spec.trainer.max_steps)
    staged = len(stage_steps) > 1 and not spec.trainer.eval_only  # evaluation has every stage attached
    attached, counts = attach_method(
        model,
        spec,
        stage=0 if staged else None,
        tokenizer=tokenizer,
        training=not spec.trainer.eval_only,
        importance=importance,
    )
    if staged or sharded is not None:
        counts = meta  # every stage's parameters, not the first's alone; partitions would count as empty
    initialised = None
    if init_source is not None:
        method_params = [p for g in attached.groups if g.name != HEAD_GROUP for p in g.params]
        initialised = load_into(attached.model, method_params, init_source, spec.method.config.init_from)
    load_s = time.time() - started
    log.info(
        "%s: trainable %d of %d (pet %d)",
        run_slug(resolved.config),
        counts.trainable_params,
        counts.total_params,
        counts.pet_params,
    )
    from petsweep.train.loop import Stages  # torch-heavy; imported once the run is known to be valid

    stages = (
        Stages(
            stage_steps,
            lambda stage: begin_stage(attached, spec, stage, tokenizer, importance),
            spec.method.restarts_schedule,
            spec.method.keeps_optimizer_state,
        )
        if staged
        else None
    )
    return Prepared(
        spec, cfg, resolved, run_path, me, started, prov, data, zero, sharded, objective, attached, counts,
        initialised, stages, _tracker(spec, cfg, resolved, run_path, me), load_s,
    )  # fmt: skip


def _tracker(spec: RunSpec, cfg, resolved: ResolvedRun, run_path: RunDir, me: ranks.Ranks):
    if not me.main:
        return NullTracker()
    from petsweep.records.labels import of_run, wandb_name, wandb_tags

    full_hash = resolved.run_id
    label = of_run(run_path.path)  # what tells it apart from its sweep's other runs (their sweep.json)
    config = OmegaConf.to_container(cfg, resolve=True)
    return Tracker(
        run_path,
        spec.wandb,
        full_hash,
        spec.sweep_name,
        wandb_name(label, run_slug(config), full_hash[:8]),  # runs differing in lr alone must not look alike
        config,
        tags=wandb_tags(label, config, (spec.wandb or {}).get("tags") or []),
        job_type=spec.method.config.name,
    )


def training_of(p: Prepared):
    """The prepared run's Training (petsweep.train.loop), resumed from its checkpoints if it has any."""
    from petsweep.train.loop import Training

    return Training(
        p.spec,
        p.run_path,
        p.attached.model,
        p.objective,
        p.data,
        list(p.attached.groups),
        p.tracker,
        p.zero,
        (p.resolved.device, p.resolved.precision == "bf16"),
        p.stages,
        list(p.attached.buffers),
    )


def record(p: Prepared, outcome: dict, **extra) -> dict:
    """Save the best weights and provenance (rank 0) and return the run's result record; `extra`: fields
    beside the outcome (how a fused run was trained)."""
    spec = p.spec
    if outcome["shards"] is not None:
        outcome["shards"]["loaded_into_shards"] = p.sharded is not None
    weights = outcome.pop("best_weights")
    if not spec.trainer.eval_only:  # eval_only attached the saved form already
        weights = spec.method.saved_state(p.attached.model, weights)
    run_start = resources.run_started_at()  # a warm worker's job, not the worker's start
    first_step_at = outcome.pop("first_step_at")
    p.prov["end"] = time.time()
    if p.me.main:
        save_file(weights, p.run_path.path / "pet_weights.safetensors")
        write_json(p.run_path.path / "provenance.json", p.prov)
    result = RunRecord(
        status=COMPLETED.value,
        run_id=p.resolved.run_id,
        backbone=spec.backbone.name,
        method=spec.method.config.name,
        task=spec.task.name,
        seed=spec.seed,
        sweep_name=spec.sweep_name,
        metric=spec.task.metric,
        random_guess_score=p.data.random_guess,
        data=p.data.stats,
        init_from=p.initialised,
        eval_only=spec.trainer.eval_only,
        **spec.method.record_fields(),  # APET's positions, OPF's choice
        budget=spec.budget.as_dict() if spec.budget is not None else None,
        **p.counts.as_dict(),
        **outcome,
        **extra,
        load_time_s=p.load_s,
        time_to_first_step_s=first_step_at - run_start if run_start else None,
        wall_time_s=time.time() - p.started,
        config=semantic_config(p.resolved.config, spec),  # a budget's choice from the spec, not solved again
        config_sha256=sha256_file(p.run_path.path / "config.yaml"),
    ).as_dict()
    p.tracker.finish(wandb_summary(result, RunRecord.scalar_keys()))
    return result


def _execute(
    spec: RunSpec,
    cfg: DictConfig,
    resolved: ResolvedRun,
    run_path: RunDir,
    init_source: Path | None,
    me: ranks.Ranks,
) -> dict:
    from petsweep.train.loop import train_alone

    prepared = prepare(spec, cfg, resolved, run_path, init_source, me)
    return record(prepared, train_alone(training_of(prepared)))


def _sharded_loading(spec: RunSpec, resolved: ResolvedRun, zero, me: ranks.Ranks):
    bf16 = resolved.precision == "bf16"
    sharded = sharded_loading(zero, spec.method, spec.trainer, bf16, me.world)
    if zero.stage == 3 and sharded is None:
        log.info(
            "ZeRO-3: %s attaches to whole weights, so the backbone loads whole, then partitions",
            spec.method.config.name,
        )
    return sharded


def _importance(spec: RunSpec, resolved: ResolvedRun, objective, data, run_path: RunDir):
    """The gradient importance a method may score matrices by (OPF), over this run's training data."""
    import torch

    from petsweep.train.importance import GradientImportance

    scored = spec.method.importance_batches()
    return GradientImportance(
        objective,
        data.train,
        spec.trainer,
        spec.seed,
        torch.device(resolved.device),
        run_path.path / "importance.json",
        scored,
    )


def summary_text(result: dict, run_path: RunDir, reused: bool = False) -> str:
    """The short summary printed after a run (or instead of re-running a COMPLETED one)."""
    share = 100 * result["trainable_params"] / max(1, result["total_params"])
    lines = [
        f"petsweep: {result['backbone']} / {result['method']} / {result['task']} (seed {result['seed']})"
        + ("  [already COMPLETED: not retrained]" if reused else ""),
        f"  {result['metric']} {result['score']:.4f} on test   "
        f"(random guess {result['random_guess_score']:.4f})",
        f"  trainable {result['trainable_params']:,} of {result['total_params']:,} params ({share:.3f}%), "
        f"method's own {result['pet_params']:,}",
        f"  {result['steps']} steps in {result['train_time_s']:.1f} s training, "
        f"{result['wall_time_s']:.1f} s in all",
        f"  record: {run_path.result_file}",
    ]
    return "\n".join(lines)
