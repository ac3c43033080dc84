"""Task-transfer matrices: weights trained on one task (rows) scored on another (columns).

The diagonal is each run's own test score; off-diagonal cells come from `petsweep transfer`, collected as
`transfer.<task>.score` columns. One matrix per trained variant: backbone, method, budget and any other config
key that differs between their runs (learning rate, apet.scale, ...: analysis.grouping, as every other kind
keeps them apart), named in its title; a cell pools seeds only. The colour scale
spans the metric's range (0-1 for scores in it), never just the cells' own spread, and the caption says which
test sets the cells were scored on (a run's own test split as its config cut it; transfer's as the other
task's config does): where a column mixes sets of different sizes it says so.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from analysis.curves import DPI, FIGSIZE, LEGEND_PT, metric_label
from analysis.grouping import pooled_note, seeds_present, with_variants
from petsweep.spec.errors import PetsweepError

# a matrix: what trained it (the config keys that differ between runs of one such group and task, as text in
# `variant`: with_variants); its rows are the tasks it was trained on
VARIANT = ["backbone", "method", "trainable_params", "variant"]


def _transfer_columns(table: pd.DataFrame) -> dict[str, str]:
    """`transfer.<task>.score` column -> <task>."""
    return {
        c: c[len("transfer.") : -len(".score")]
        for c in table.columns
        if c.startswith("transfer.") and c.endswith(".score")
    }


def transfer_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Long table: variant, train task, eval task, and mean/std/count of the score over seeds.

    `variant` names the config keys (other than seeds) that split runs of one backbone, method, budget and
    task; `attrs["variant_keys"]` lists them, `attrs["note"]` says what each cell pools.

    Raises:
        PetsweepError: no run of the table was scored on another task.
    """
    columns = _transfer_columns(table)
    done, keys = with_variants(table, ["backbone", "method", "trainable_params", "task"])
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
    stats = stats.merge(keep, on=VARIANT)
    stats.attrs["variant_keys"] = keys
    note = pooled_note(keys, stats["count"], seeds_in=seeds_present(table), bars=False)
    stats.attrs["note"] = note.replace("points: ", "cells: ")
    return stats


def colour_range(scores: pd.Series) -> tuple[float, float]:
    """The colour scale: the metric's own range (0-1 when every score lies in it), so that 0.38 and 0.42
    look nearly alike, as they are; scores outside [0, 1] (losses, correlations) span 0-1 and themselves."""
    lo, hi = float(scores.min()), float(scores.max())
    return min(lo, 0.0), max(hi, 1.0)


def test_sets_note(table: pd.DataFrame, tasks: list[str], scale: tuple[float, float]) -> str:
    """Caption: where the diagonal and the off-diagonal cells were scored, with the test-set sizes per
    evaluated task (data.sizes.test of the runs; test_examples of their transfer records)."""
    done = table[table["status"] == "COMPLETED"]
    sizes = done["data.sizes.test"] if "data.sizes.test" in done else pd.Series(np.nan, index=done.index)
    own: dict[str, set[int]] = {}
    other: dict[str, set[int]] = {}
    for run_dir, task, size in zip(done["run_dir"], done["task"], sizes):
        if not pd.isna(size):
            own.setdefault(task, set()).add(int(size))
        for evaluated in tasks:
            record = Path(run_dir) / "transfer" / f"{evaluated}.json"
            if evaluated != task and record.exists():
                examples = json.loads(record.read_text()).get("test_examples")
                if examples is not None:
                    other.setdefault(evaluated, set()).add(int(examples))
    note = (
        "outlined diagonal: each run's own test score (its task's test split, as its config cut it); "
        "other cells: "
        f"`petsweep transfer` on the evaluated task's test split; colour spans {scale[0]:g}-{scale[1]:g}"
    )
    mixed = [
        f"{task} {'/'.join(map(str, sorted(own[task])))} (own) vs "
        f"{'/'.join(map(str, sorted(other[task])))} (transfer)"
        for task in tasks
        if task in own and task in other and own[task] != other[task]
    ]
    if mixed:
        note += "; columns mix test sets of different sizes, in examples: " + ", ".join(mixed)
    return note


def _title(variant: tuple, several_backbones: bool) -> str:
    """backbone / method, budget, and on lines below it the keys that set this variant apart."""
    backbone, method, budget, keys = variant
    title = (f"{backbone} / " if several_backbones else "") + f"{method}, {int(budget):,} params"
    return title + ("\n" + textwrap.fill(keys, width=48) if keys else "")


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
    for i, task in enumerate(rows):  # the diagonal (own test score) outlined: it comes from another source
        if task in tasks:
            j = tasks.index(task)
            ax.add_patch(Rectangle((j - 0.44, i - 0.44), 0.88, 0.88, fill=False, ec="white", ls="--", lw=1.2))
    ax.set_xticks(range(len(tasks)), tasks, fontsize=LEGEND_PT, rotation=20)
    ax.set_yticks(range(len(rows)), rows, fontsize=LEGEND_PT)
    ax.set(xlabel="evaluated on", ylabel="trained on")
    return image


def plot_transfer(table: pd.DataFrame, path: Path) -> Path:
    """A matrix per variant (mean over seeds); filter with `--where` to keep it readable."""
    stats = transfer_scores(table)
    tasks = sorted(set(stats["task"]) | set(stats["eval_task"]))
    variants = list(stats.groupby(VARIANT).groups)
    columns = min(len(variants), 4)
    rows = int(np.ceil(len(variants) / columns))
    # each row of panels as tall as its matrices need (#26 review: 4.8 inches a row drew 1 x 2 matrices
    # on a page 29 inches tall): 0.6 inch a task, room for the title above and the tick labels below
    trained = stats.groupby(VARIANT, sort=False)["task"].nunique().reindex(variants).to_numpy()
    heights = [0.6 * trained[r * columns : (r + 1) * columns].max() + 1.6 for r in range(rows)]
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(max(FIGSIZE[0], (0.6 * len(tasks) + 1.8) * columns + 1.2), sum(heights) + 0.9),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"height_ratios": heights},
    )
    vmin, vmax = colour_range(stats["mean"])
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
    note = textwrap.fill(
        f"{stats.attrs['note']}; {test_sets_note(table, tasks, (vmin, vmax))}",
        width=int(fig.get_figwidth() * 72 / (LEGEND_PT * 0.56)),
    )
    fig.supxlabel(note, fontsize=LEGEND_PT)
    fig.savefig(path, dpi=DPI)  # constrained layout places the shared colorbar (tight_layout cannot)
    plt.close(fig)
    return path
