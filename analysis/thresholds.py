"""Budget thresholds (the APET paper's findings 2 and 3), with bootstrap intervals over seeds.

- low threshold: the smallest number of tunable parameters K whose mean score beats random guessing (by more
  than `delta`, 0 by default: `delta=0.05` is the threshold search's target random+0.05);
- high threshold: the smallest K whose mean score is within epsilon of full fine-tuning.

Runs are pooled over seeds only: each PET method has thresholds of its own (LoRA and BitFit runs at nearby
budgets are two curves, never one), and any other config key that differs between runs at one budget gives
thresholds of its own (a `variant`, see analysis.grouping). A bootstrap draw in which no budget reaches the
target counts as "beyond the largest budget" (infinity), never as a missing draw, and the share of such draws
is reported: an interval that reaches infinity says the grid is too small to pin the threshold down.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.grouping import with_variants
from analysis.load import check_columns

BY = ["task", "backbone", "method", "trainable_params"]
# thresholds are counted in trainable parameters, the task head's included (the curves' axis); the threshold
# search counts the budget it sets (PET parameters): PET parameters = trainable_params - head_params
BUDGET_UNIT = "trainable_params (PET + head)"


def _head_params(group: pd.DataFrame) -> float:
    """The group's task-head size (one value: its runs share backbone and task), NaN where the table has no
    head_params column or its runs differ in it."""
    if "head_params" not in group or group["head_params"].nunique() != 1:
        return float("nan")
    return float(group["head_params"].iloc[0])


def smallest_k(scores_by_k: dict[int, np.ndarray], target: float) -> float:
    """The smallest K whose mean score is above `target` (infinity if none is)."""
    for k in sorted(scores_by_k):
        if np.mean(scores_by_k[k]) > target:
            return float(k)
    return float("inf")


def _bootstrap(
    scores_by_k: dict[int, np.ndarray], target_fn, draws: int, seed: int
) -> tuple[float, float, float]:
    """A 90% interval of the threshold and the share of draws that reach no budget.

    Seeds are resampled with replacement within each K (and the reference). Quantiles are taken of the
    draws themselves (no interpolation), so "not reached" (inf) can be an end of the interval.
    """
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(draws):
        sample = {k: rng.choice(v, size=len(v), replace=True) for k, v in scores_by_k.items()}
        found.append(smallest_k(sample, target_fn(rng)))
    found = np.array(found)
    lo, hi = np.quantile(found, [0.05, 0.95], method="inverted_cdf")
    return float(lo), float(hi), float(np.isinf(found).mean())


def _reference(done: pd.DataFrame, group: pd.DataFrame, keys: list[str], method: str) -> np.ndarray:
    """Full-FT scores for a PET group: same task and backbone, and the same value of any key on which the
    reference runs themselves differ (full FT at two step counts is matched to the PET runs' step count)."""
    ref = done[
        (done["task"] == group["task"].iloc[0])
        & (done["backbone"] == group["backbone"].iloc[0])
        & (done["method"] == method)
    ]
    for key in keys:
        if ref[key].astype(str).nunique() > 1:
            ref = ref[ref[key].astype(str) == str(group[key].iloc[0])]
    return ref["score"].to_numpy()


def thresholds(
    table: pd.DataFrame,
    epsilon: float = 0.01,
    reference_method: str = "full",
    draws: int = 500,
    seed: int = 0,
    pool: tuple[str, ...] = (),
    delta: float = 0.0,
) -> pd.DataFrame:
    """Per (task, backbone, PET method, variant): low and high thresholds over its runs' trainable-parameter
    counts.

    Args:
        table: a collected table (one row per run).
        epsilon: how close to full fine-tuning counts as reaching it (absolute score): the high target is
            full - epsilon.
        delta: how far above random guessing the low target lies (absolute score): random + delta. With
            `delta=D, epsilon=E` the thresholds are the threshold search's targets random+D and full-E.
        reference_method: the method whose mean score defines "full fine-tuning".
        pool: config columns to pool over besides the seeds.
    Returns:
        a row per group: thresholds (inf: not reached), 90% intervals, `*_not_reached` (share of bootstrap
        draws reaching no budget), the seeds per budget, the smallest budget tried (a threshold equal to it
        says only "at or below it": every budget tried reaches the target), and `variant` (what else sets
        the group apart). Budgets are trainable parameters, the head's included (`budget_unit`); the
        group's `head_params` converts them to the PET parameters `budget=K` and the threshold search count.
    """
    check_columns(table)
    done, keys = with_variants(table, BY, pool)
    rows = []
    pets = done[done["method"] != reference_method]
    for (task, backbone, method, variant), pet in pets.groupby(["task", "backbone", "method", "variant"]):
        scores = {int(k): g["score"].to_numpy() for k, g in pet.groupby("trainable_params")}
        if not scores:
            continue
        guess = float(pet["random_guess_score"].mean())
        full = _reference(done, pet, keys, reference_method)
        row = {
            "task": task,
            "backbone": backbone,
            "method": method,
            "variant": variant,
            "random_guess": guess,
            "budgets": len(scores),
            "seeds_per_budget": min(len(v) for v in scores.values()),
            "smallest_budget": min(scores),  # a threshold equal to it lies at or below it
            "budget_unit": BUDGET_UNIT,
            "head_params": _head_params(pet),
            "low_threshold": smallest_k(scores, guess + delta),
        }
        row["low_ci_lo"], row["low_ci_hi"], row["low_not_reached"] = _bootstrap(
            scores, lambda rng, low=guess + delta: low, draws, seed
        )
        row.update(  # kept as columns when there is nothing to compare with, and said why
            full_ft=np.nan,
            high_threshold=np.nan,
            high_ci_lo=np.nan,
            high_ci_hi=np.nan,
            high_not_reached=np.nan,
        )
        row["note"] = "" if len(full) else f"no {reference_method} run to compare with: no high threshold"
        if len(full):
            row["full_ft"] = float(full.mean())
            row["high_threshold"] = smallest_k(scores, full.mean() - epsilon)
            row["high_ci_lo"], row["high_ci_hi"], row["high_not_reached"] = _bootstrap(
                scores, lambda rng, full=full: rng.choice(full, size=len(full)).mean() - epsilon, draws, seed
            )
        rows.append(row)
    return pd.DataFrame(rows)
