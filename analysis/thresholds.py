"""Budget thresholds (the APET paper's findings 2 and 3), with bootstrap intervals over seeds.

- low threshold: the smallest number of tunable parameters K whose mean score beats random guessing;
- high threshold: the smallest K whose mean score is within epsilon of full fine-tuning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import check_columns


def smallest_k(scores_by_k: dict[int, np.ndarray], target: float) -> float:
    """The smallest K whose mean score is above `target` (NaN if none is)."""
    for k in sorted(scores_by_k):
        if np.mean(scores_by_k[k]) > target:
            return float(k)
    return float("nan")


def _bootstrap(scores_by_k: dict[int, np.ndarray], target_fn, draws: int, seed: int) -> tuple[float, float]:
    """A 90% interval of the threshold: resample seeds within each K (and the reference) with replacement."""
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(draws):
        sample = {k: rng.choice(v, size=len(v), replace=True) for k, v in scores_by_k.items()}
        found.append(smallest_k(sample, target_fn(rng)))
    found = np.array(found)
    if np.isnan(found).all():
        return float("nan"), float("nan")
    return float(np.nanpercentile(found, 5)), float(np.nanpercentile(found, 95))


def thresholds(table: pd.DataFrame, epsilon: float = 0.01, reference_method: str = "full", draws: int = 500,
               seed: int = 0) -> pd.DataFrame:
    """Per (task, backbone): low and high thresholds over the PET runs' trainable-parameter counts.

    Args:
        table: a collected table (one row per run).
        epsilon: how close to full fine-tuning counts as reaching it (absolute score).
        reference_method: the method whose mean score defines "full fine-tuning".
    """
    check_columns(table)
    done = table[table["status"] == "COMPLETED"]
    rows = []
    for (task, backbone), group in done.groupby(["task", "backbone"]):
        pet = group[group["method"] != reference_method]
        scores = {int(k): g["score"].to_numpy() for k, g in pet.groupby("trainable_params")}
        if not scores:
            continue
        guess = float(group["random_guess_score"].mean())
        full = group[group["method"] == reference_method]["score"].to_numpy()
        row = {"task": task, "backbone": backbone, "random_guess": guess, "budgets": len(scores),
               "low_threshold": smallest_k(scores, guess)}
        row["low_ci_lo"], row["low_ci_hi"] = _bootstrap(scores, lambda rng: guess, draws, seed)
        if len(full):
            row["full_ft"] = float(full.mean())
            row["high_threshold"] = smallest_k(scores, full.mean() - epsilon)
            row["high_ci_lo"], row["high_ci_hi"] = _bootstrap(
                scores, lambda rng: rng.choice(full, size=len(full)).mean() - epsilon, draws, seed)
        rows.append(row)
    return pd.DataFrame(rows)
