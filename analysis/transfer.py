"""Task-transfer matrices: weights trained on one task (rows) scored on another (columns).

The diagonal is each run's own test score; off-diagonal cells come from `petsweep transfer`, collected as
`transfer.<task>.score` columns. One matrix per trained variant: backbone, method and budget.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.curves import DPI, FIGSIZE, LEGEND_PT, metric_label
from petsweep.errors import PetsweepError

VARIANT = ["backbone", "method", "trainable_params"]


def _transfer_columns(table: pd.DataFrame) -> dict[str, str]:
    """`transfer.<task>.score` column -> <task>."""
    return {
        c: c[len("transfer.") : -len(".score")]
        for c in table.columns
        if c.startswith("transfer.") and c.endswith(".score")
    }


def transfer_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Long table: variant, train task, eval task, and mean/std/count of the score over seeds.

    Raises:
        PetsweepError: no run of the table was scored on another task.
    """
    columns = _transfer_columns(table)
    done = table[table["status"] == "COMPLETED"]
    if not columns or done[list(columns)].isna().all().all():
        raise PetsweepError(
            "--kind transfer: needs runs scored on another task; run `petsweep transfer "
            "<sweep dir> --task <other task>`, then collect again"
        )
    frames = [done[VARIANT + ["task", "score"]].assign(eval_task=done["task"])]
    for column, task in columns.items():
        frames.append(
            done[VARIANT + ["task", column]].rename(columns={column: "score"}).assign(eval_task=task)
        )
    scores = pd.concat(frames, ignore_index=True).dropna(subset=["score"])
    stats = (
        scores.groupby(VARIANT + ["task", "eval_task"])["score"].agg(["mean", "std", "count"]).reset_index()
    )
    transferred = stats[stats["task"] != stats["eval_task"]]
    keep = transferred[VARIANT].drop_duplicates()  # variants with at least one off-diagonal cell
    return stats.merge(keep, on=VARIANT)


def _title(variant: tuple, several_backbones: bool) -> str:
    backbone, method, budget = variant
    return (f"{backbone} / " if several_backbones else "") + f"{method}, {int(budget):,} params"


def _draw_matrix(ax, cells: pd.DataFrame, tasks: list[str], vmin: float, vmax: float):
    matrix = cells.pivot(index="task", columns="eval_task", values="mean")
    rows = [t for t in tasks if t in matrix.index]
    matrix = matrix.reindex(index=rows, columns=tasks)
    image = ax.imshow(matrix.to_numpy(dtype=float), vmin=vmin, vmax=vmax, cmap="viridis")
    for (i, j), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
        if not np.isnan(value):
            ax.text(
                j,
                i,
                f"{value:.3f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value < (vmin + vmax) / 2 else "black",
            )
    ax.set_xticks(range(len(tasks)), tasks, fontsize=LEGEND_PT, rotation=20)
    ax.set_yticks(range(len(rows)), rows, fontsize=LEGEND_PT)
    ax.set(xlabel="evaluated on", ylabel="trained on")
    return image


def plot_transfer(table: pd.DataFrame, path: Path) -> Path:
    """A matrix per variant (mean over seeds); filter with `--where` to keep it readable."""
    stats = transfer_scores(table)
    tasks = sorted(set(stats["task"]) | set(stats["eval_task"]))
    variants = list(stats.groupby(VARIANT).groups)
    columns = min(len(variants), 3)
    rows = int(np.ceil(len(variants) / columns))
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(FIGSIZE[0] * columns / 1.4, FIGSIZE[1] * rows),
        squeeze=False,
        layout="constrained",
    )
    vmin, vmax = float(stats["mean"].min()), float(stats["mean"].max())
    several = stats["backbone"].nunique() > 1
    for index, (ax, variant) in enumerate(zip(axes.flat, variants)):
        cells = stats[(stats[VARIANT] == pd.Series(variant, index=VARIANT)).all(axis=1)]
        image = _draw_matrix(ax, cells, tasks, vmin, vmax)
        ax.set_title(_title(variant, several), fontsize=9)
        if index % columns:
            ax.set_ylabel("")
    for ax in axes.flat[len(variants) :]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, label=f"{metric_label(table)} (mean over seeds)")
    fig.savefig(path, dpi=DPI)  # constrained layout places the shared colorbar (tight_layout cannot)
    plt.close(fig)
    return path
