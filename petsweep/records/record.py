"""result.json: the record of one finished run, defined once.

The run writes it (petsweep.run.app), the tidy table takes its scalar fields as columns (analysis.load), the
W&B summary mirrors those scalars, and the tests compare against the same fields: a field added here reaches
all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

SCALAR_TYPES = ("int", "float", "str", "bool", "State")


@dataclass
class RunRecord:
    """Attributes (counts: see petsweep.model.params; times in seconds):
    status: COMPLETED (a record exists only for a finished run).
    run_id: the run's identity hash (petsweep.spec.identity).
    backbone, method, task, seed, sweep_name: what ran.
    metric, score: the task's selection metric and its test score with the best dev checkpoint.
    random_guess_score: the test score of random guessing (petsweep.tasks.metrics.random_guess_score: a
        uniformly drawn class, never the most frequent one; the APET paper's low threshold is relative to it).
    metrics, train_subset_metrics, train_subset_score: every test metric; the same on a train subset.
    best_step, best_dev_score, steps: the selected checkpoint, its dev score, steps trained.
    stopped_early: training stopped before max_steps (trainer.early_stopping_patience ran out).
    total_params, nonembedding_params, head_params, pet_params, trainable_params: parameter accounting.
    count_notes: what the method says of its count (a target widened to a fused projection; DePT's s).
    train_time_s, dev_eval_time_s, dev_evals, final_eval_time_s: where the time went (plans cost them).
    tokens, tokens_per_s, step_time_s, peak_memory_mb: throughput and memory (the peak of the busiest rank;
        rank_peak_memory_mb: each rank's, in rank order).
    device, precision, deepspeed: where and how it ran (the resolved precision and ZeRO preset).
    ranks: the processes that trained it (data parallel, or ZeRO across them); backbone_dtype: the dtype the
        frozen backbone weights were held in (bf16 on GPUs that have it, else float32).
    shards: under ZeRO, the elements of parameters and of optimizer partitions each rank held (lists in rank
        order), and whether the backbone loaded straight into its shards; None without DeepSpeed.
    load_time_s, time_to_first_step_s, wall_time_s: start-up and total (load + train + eval); the time to the
        first step from the run's own start: its process's, or its job's in a warm worker (resources.py).
    data: split sizes, class counts, label map, repeats and overlaps removed (petsweep.tasks).
    init_from: the run whose weights this one started from, and what was loaded; eval_only: no training.
    apet: an APET run's budget (scale, requested and achieved K, eligible count, seed, granularity) and the
        sha256 of its positions; None for other methods.
    opf: an OPF run's over-parameterised matrices (name, family, round, MPO and dense sizes) and totals.
    budget: what `budget=` resolved to (petsweep/model/budget.py): requested (as given), target and achieved
    counts     (pet_params), their ratio and the chosen knob values; None without a budget (APET's is in
    `apet`). config: the run's semantic config (what its identity hashes).
    config_sha256: sha256 of the run dir's config.yaml as the run read it: rehash and reuse re-identify a
        record from config.yaml only while it is unchanged (an edited copy must not rename a record).
    pet_moved, pet_movement: whether the method's trained parameters change any dev prediction of the best
        checkpoint (false: the score is the head's alone, and train.log warns), and how far they moved from
        where they started (petsweep/train/movement.py); None where the check is skipped.
    fused_with: the run ids this run trained beside, one frozen backbone and a batch of all their rows
        (launcher fuse; its times are the group's); None when it trained alone.
    """

    status: str
    run_id: str
    backbone: str
    method: str
    task: str
    seed: int
    sweep_name: str
    metric: str
    score: float
    random_guess_score: float
    metrics: dict
    train_subset_metrics: dict
    train_subset_score: float
    best_step: int
    best_dev_score: float | None
    steps: int
    stopped_early: bool
    total_params: int
    nonembedding_params: int
    head_params: int
    pet_params: int
    trainable_params: int
    count_notes: list
    train_time_s: float
    dev_eval_time_s: float
    dev_evals: int
    final_eval_time_s: float
    tokens: int
    tokens_per_s: float | None
    step_time_s: float | None
    peak_memory_mb: float
    rank_peak_memory_mb: list
    device: str
    precision: str
    deepspeed: str
    ranks: int
    shards: dict | None
    backbone_dtype: str
    load_time_s: float
    time_to_first_step_s: float | None
    wall_time_s: float
    data: dict
    init_from: dict | None
    eval_only: bool
    # what the method adds (PETMethod.record_fields); keyword-only, so their place in the record stays
    apet: dict | None = dataclasses.field(default=None, kw_only=True)
    opf: dict | None = dataclasses.field(default=None, kw_only=True)
    config: dict
    fused_with: list | None = None
    budget: dict | None = None
    pet_moved: bool | None = None
    pet_movement: dict | None = None
    config_sha256: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def scalar_keys(cls) -> tuple[str, ...]:
        """Fields that are one value (a table column), not a nested dict."""
        return tuple(f.name for f in dataclasses.fields(cls) if str(f.type).split(" ")[0] in SCALAR_TYPES)


STILL = "PET parameters did not move"


def notes(result: dict | None) -> list[str]:
    """What a finished run's record warns of beside its score (sweep lines, `petsweep status`): its method's
    trained parameters changed no dev prediction (pet_moved false; train.log says how far they moved). A
    record older than the check (no pet_moved) or one the check skipped (None) says nothing."""
    return [STILL] if result and result.get("pet_moved") is False else []
