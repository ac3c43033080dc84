"""Figures of score against budget and scale (matplotlib; PNG or PDF by the file's suffix).

Each `plot_<kind>(table, path)` draws one figure (analysis.plots maps the CLI's `--kind` to them). A kind
the data cannot support raises PetsweepError with the reason (no traceback).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on clusters and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.thresholds import thresholds  # noqa: E402
from petsweep.errors import PetsweepError  # noqa: E402

FIGSIZE = (6.4, 4.8)
DPI = 100


def mean_std(table: pd.DataFrame, by: list[str], value: str = "score") -> pd.DataFrame:
    """Mean, std and count of `value` over seeds, per group (COMPLETED runs only)."""
    done = table[table["status"] == "COMPLETED"]
    return done.groupby(by)[value].agg(["mean", "std", "count"]).reset_index()


def pareto_front(points: pd.DataFrame, x: str = "trainable_params", y: str = "mean") -> pd.DataFrame:
    """Points no other point beats with fewer (or equal) parameters and a higher (or equal) score."""
    ordered = points.sort_values([x, y], ascending=[True, False])
    best, keep = -np.inf, []
    for index, row in ordered.iterrows():
        if row[y] > best:
            keep.append(index)
            best = row[y]
    return ordered.loc[keep]


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def panel_row(n: int):
    fig, axes = plt.subplots(1, n, figsize=(FIGSIZE[0] * max(1, n) / 1.4, FIGSIZE[1]), squeeze=False)
    return fig, axes[0]


def plot_curves(table: pd.DataFrame, path: Path) -> Path:
    """Score vs tunable parameters (log x) per backbone, a line per method, mean +- std over seeds."""
    stats = mean_std(table, ["backbone", "method", "trainable_params"])
    if stats.empty:
        raise PetsweepError("curves: no COMPLETED runs in the table")
    backbones = sorted(stats["backbone"].unique())
    fig, axes = panel_row(len(backbones))
    guess = table.groupby("backbone")["random_guess_score"].mean()
    for ax, backbone in zip(axes, backbones):
        for method, rows in stats[stats["backbone"] == backbone].groupby("method"):
            rows = rows.sort_values("trainable_params")
            ax.errorbar(rows["trainable_params"], rows["mean"], yerr=rows["std"].fillna(0), marker="o", capsize=3,
                        label=method)
        ax.axhline(guess.get(backbone, np.nan), color="grey", linestyle=":", label="random guess")
        ax.set(xscale="log", title=backbone, xlabel="tunable parameters", ylabel="score")
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_pareto(table: pd.DataFrame, path: Path) -> Path:
    """Every (backbone, method, budget) point, with the Pareto frontier of score vs parameters."""
    stats = mean_std(table, ["backbone", "method", "trainable_params"])
    if stats.empty:
        raise PetsweepError("pareto: no COMPLETED runs in the table")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for (backbone, method), rows in stats.groupby(["backbone", "method"]):
        ax.scatter(rows["trainable_params"], rows["mean"], label=f"{backbone} / {method}", s=18)
    front = pareto_front(stats)
    ax.step(front["trainable_params"], front["mean"], where="post", color="black", label="Pareto frontier")
    ax.set(xscale="log", xlabel="tunable parameters", ylabel="score (mean over seeds)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_gap(table: pd.DataFrame, path: Path) -> Path:
    """Best score minus worst score among methods, per backbone size (the power-of-scale view)."""
    stats = mean_std(table, ["backbone", "method"])
    if stats["method"].nunique() < 2:
        raise PetsweepError("gap: needs runs of at least two methods")
    sizes = table.groupby("backbone")["total_params"].first()
    gap = stats.groupby("backbone")["mean"].agg(lambda s: s.max() - s.min()).reindex(sizes.sort_values().index)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(sizes.loc[gap.index], gap.to_numpy(), marker="o")
    for backbone, value in gap.items():
        ax.annotate(backbone, (sizes[backbone], value), fontsize=8)
    ax.set(xscale="log", xlabel="backbone parameters", ylabel="score gap between methods (max - min)")
    return save_figure(fig, path)


def plot_generalization(table: pd.DataFrame, path: Path) -> Path:
    """Train-subset score minus test score per method (mean +- std over runs)."""
    done = table[table["status"] == "COMPLETED"].assign(gap=lambda t: t["train_subset_score"] - t["score"])
    if done.empty:
        raise PetsweepError("generalization: no COMPLETED runs in the table")
    stats = done.groupby("method")["gap"].agg(["mean", "std"]).reset_index()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.bar(stats["method"], stats["mean"], yerr=stats["std"].fillna(0), capsize=4)
    ax.set(ylabel="train-subset score - test score", title="generalization gap")
    return save_figure(fig, path)


def plot_threshold(table: pd.DataFrame, path: Path) -> Path:
    """Low and high thresholds per task and backbone, with their bootstrap intervals."""
    found = thresholds(table)
    if found.empty or found["low_threshold"].isna().all():
        raise PetsweepError("threshold: no budget axis (PET runs at several parameter counts) beats random guess")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    labels = [f"{r.task}\n{r.backbone}" for r in found.itertuples()]
    x = np.arange(len(found))
    ax.scatter(x, found["low_threshold"], label="low: beats random guess", marker="v")
    if "high_threshold" in found:
        ax.scatter(x, found["high_threshold"], label="high: within epsilon of full FT", marker="^")
    ax.set(yscale="log", ylabel="tunable parameters", xticks=x)
    ax.set_xticklabels(labels, fontsize=7)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_convergence(table: pd.DataFrame, path: Path) -> Path:
    """Dev score vs training step per method (mean over runs), from each run's metrics.jsonl."""
    import json

    rows = []
    for run in table[table["status"] == "COMPLETED"].itertuples():
        log = Path(run.run_dir) / "metrics.jsonl"
        key = f"dev_{run.metric}"
        for line in log.read_text().splitlines() if log.exists() else []:
            entry = json.loads(line)
            if key in entry:
                rows.append({"method": run.method, "step": entry["step"], "score": entry[key]})
    if not rows:
        raise PetsweepError("convergence: no per-eval dev scores (metrics.jsonl) next to the table's runs")
    curves = pd.DataFrame(rows).groupby(["method", "step"])["score"].mean().reset_index()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for method, rows_m in curves.groupby("method"):
        ax.plot(rows_m["step"], rows_m["score"], marker="o", label=method)
    ax.set(xlabel="training step", ylabel="dev score", title="convergence")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_memory(table: pd.DataFrame, path: Path) -> Path:
    """Peak memory vs batch size per method."""
    column = "cfg.trainer.batch_size"
    if column not in table or table[column].nunique() < 2:
        raise PetsweepError("memory: needs runs at two or more batch sizes (sweep trainer.batch_size)")
    stats = mean_std(table, ["method", column], "peak_memory_mb")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for method, rows in stats.groupby("method"):
        ax.plot(rows[column], rows["mean"], marker="o", label=method)
    ax.set(xlabel="batch size", ylabel="peak memory (MB)", title="memory")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
