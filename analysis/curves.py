"""Figures of score against budget and scale (matplotlib; PNG or PDF by the file's suffix).

Each `plot_<kind>(table, path)` draws one figure (analysis.plots maps the CLI's `--kind` to them). A kind
the data cannot support raises PetsweepError with the reason (no traceback).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on clusters and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.grouping import pooled_note, with_variants  # noqa: E402
from analysis.thresholds import thresholds  # noqa: E402
from petsweep.errors import PetsweepError  # noqa: E402

FIGSIZE = (6.4, 4.8)
DPI = 200  # raster output (PNG); PDF and SVG are vector
LEGEND_PT, LABEL_PT = 8, 9


def mean_std(
    table: pd.DataFrame, by: list[str], value: str = "score", pool: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Mean, std and count of `value` over seeds, per group of `by` and variant (COMPLETED runs only).

    Runs of a group that differ in any other config key (see analysis.grouping) are separate variants,
    named in the `variant` column; `stats.attrs["note"]` says what each point pools.
    """
    done, keys = with_variants(table, by, pool)
    stats = done.groupby([*by, "variant"], dropna=False)[value].agg(["mean", "std", "count"]).reset_index()
    stats.attrs["variant_keys"] = keys
    stats.attrs["note"] = pooled_note(keys, stats["count"], pool, seeds_in=table.columns)
    return stats


def label(name: str, variant: str) -> str:
    return f"{name} ({variant})" if variant else str(name)


def pareto_front(points: pd.DataFrame, x: str = "trainable_params", y: str = "mean") -> pd.DataFrame:
    """Points no other point beats with fewer (or equal) parameters and a higher (or equal) score."""
    ordered = points.sort_values([x, y], ascending=[True, False])
    best, keep = -np.inf, []
    for index, row in ordered.iterrows():
        if row[y] > best:
            keep.append(index)
            best = row[y]
    return ordered.loc[keep]


def save_figure(fig, path: Path, note: str | None = None, top: float = 1.0) -> Path:
    """Save (and close); `note` is a caption line at the bottom saying what each point pools; `top` leaves
    room above the panels for a shared legend."""
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=LEGEND_PT, wrap=True)
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, top))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def metric_label(table: pd.DataFrame, split: str = "test") -> str:
    """The y label: the task metric by name and the split it was measured on ("test accuracy")."""
    metrics = sorted(table.loc[table["status"] == "COMPLETED", "metric"].dropna().unique())
    return f"{split} {metrics[0]}" if len(metrics) == 1 else f"{split} score ({', '.join(metrics)})"


def shared_legend(fig, axes, columns: int = 4) -> float:
    """One legend for every panel (labels deduplicated, in first-seen order) above the panels; returns the
    share of the figure's height the panels may use."""
    handles: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    if not handles:
        return 1.0
    ncol = min(columns, len(handles))
    rows = -(-len(handles) // ncol)
    top = 1 - (0.03 + 0.03 * rows) * 4.8 / fig.get_figheight()
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="upper center",
        ncol=ncol,
        fontsize=LEGEND_PT,
        frameon=False,
    )
    return top


def rank_of(table: pd.DataFrame) -> dict[tuple, str]:
    """(task, backbone, method, trainable_params) -> "r=8" for LoRA points, to label a budget axis by rank."""
    column = "cfg.method.r"
    if column not in table:
        return {}
    done = table[(table["status"] == "COMPLETED") & (table["method"] == "lora")]
    ranks = done.groupby(["task", "backbone", "method", "trainable_params"])[column].agg(lambda r: set(r))
    return {key: f"r={next(iter(r)):g}" for key, r in ranks.items() if len(r) == 1}


def one_task(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Views that compare runs of one task: given several, say how to pick one (averaging would mislead)."""
    tasks = sorted(table.loc[table["status"] == "COMPLETED", "task"].dropna().unique())
    if len(tasks) > 1:
        raise PetsweepError(
            f"{kind}: the table holds {len(tasks)} tasks ({', '.join(tasks)}); draw one at a time, "
            f"e.g. --where \"task == '{tasks[0]}'\""
        )
    return table


def by_size(table: pd.DataFrame, backbones) -> list[str]:
    """Backbones ordered by their parameter count (then name), as a scale axis should be."""
    sizes = table.groupby("backbone")["total_params"].first()
    return sorted(backbones, key=lambda b: (sizes.get(b, np.inf), b))


def plot_curves(table: pd.DataFrame, path: Path) -> Path:
    """Score vs tunable parameters (log x): a row per task, a panel per backbone (by size), a line per method,
    mean +- std over seeds, with the random-guess and full fine-tuning scores as horizontal lines."""
    stats = mean_std(table, ["task", "backbone", "method", "trainable_params"])
    if stats.empty:
        raise PetsweepError("curves: no COMPLETED runs in the table")
    tasks, backbones = sorted(stats["task"].unique()), by_size(table, stats["backbone"].unique())
    fig, axes = plt.subplots(
        len(tasks),
        len(backbones),
        squeeze=False,
        sharey="row",  # a task's panels on one scale: backbones compare at a glance
        figsize=(FIGSIZE[0] * len(backbones) / 1.4, FIGSIZE[1] * len(tasks) + 0.6),
    )
    guess = table.groupby(["task", "backbone"])["random_guess_score"].mean()
    ranks, ylabel = rank_of(table), metric_label(table)
    for (task, backbone), ax in zip([(t, b) for t in tasks for b in backbones], axes.flat):
        panel = stats[(stats["task"] == task) & (stats["backbone"] == backbone)]
        if panel.empty:
            ax.axis("off")
            continue
        for (method, variant), rows in panel.groupby(["method", "variant"]):
            rows = rows.sort_values("trainable_params")
            ax.errorbar(
                rows["trainable_params"],
                rows["mean"],
                yerr=rows["std"].fillna(0),
                marker="o",
                capsize=3,
                label=label(method, variant),
            )
            for params, mean in zip(rows["trainable_params"], rows["mean"]):
                if (task, backbone, method, params) in ranks:
                    ax.annotate(
                        ranks[(task, backbone, method, params)],
                        (params, mean),
                        textcoords="offset points",
                        xytext=(4, -10),
                        fontsize=7,
                    )
        for (_, variant), full in panel[panel["method"] == "full"].groupby(["method", "variant"]):
            ax.axhline(
                full["mean"].iloc[0],
                color="black",
                linestyle="--",
                linewidth=0.8,
                label=label("full FT", variant),
            )
        ax.axhline(guess.get((task, backbone), np.nan), color="grey", linestyle=":", label="random guess")
        ax.set_xscale("log")
        ax.set_title(f"{task} / {backbone}", fontsize=LABEL_PT + 1)
        ax.set_xlabel("tunable parameters", fontsize=LABEL_PT)
        ax.set_ylabel(ylabel if ax in axes[:, 0] else "", fontsize=LABEL_PT)
        ax.tick_params(labelleft=True)
    top = shared_legend(fig, axes)
    return save_figure(fig, path, stats.attrs["note"], top)


def plot_pareto(table: pd.DataFrame, path: Path) -> Path:
    """Every (backbone, method, budget) point, with the Pareto frontier of score vs parameters.

    Colour is the backbone (light to dark with size), marker the method: neither runs out of distinct values.
    """
    table = one_task(table, "pareto")
    stats = mean_std(table, ["backbone", "method", "trainable_params"])
    if stats.empty:
        raise PetsweepError("pareto: no COMPLETED runs in the table")
    backbones = by_size(table, stats["backbone"].unique())
    colors = dict(zip(backbones, plt.get_cmap("viridis_r")(np.linspace(0.15, 0.95, len(backbones)))))
    methods = sorted({label(m, v) for m, v in zip(stats["method"], stats["variant"])})
    markers = dict(zip(methods, "osD^vP*Xph<>" * 4))
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for (backbone, method, variant), rows in stats.groupby(["backbone", "method", "variant"]):
        ax.scatter(
            rows["trainable_params"],
            rows["mean"],
            color=colors[backbone],
            marker=markers[label(method, variant)],
            s=28,
        )
    front = pareto_front(stats)
    ax.step(front["trainable_params"], front["mean"], where="post", color="black", linewidth=0.8)
    ax.set(xscale="log", xlabel="tunable parameters", ylabel=f"{metric_label(table)} (mean over seeds)")
    # two short legends (colour: backbone by size; marker: method) instead of one entry per pair
    by_colour = [plt.Line2D([], [], color=colors[b], marker="o", linestyle="", label=b) for b in backbones]
    by_marker = [plt.Line2D([], [], color="grey", marker=markers[m], linestyle="", label=m) for m in methods]
    frontier = [plt.Line2D([], [], color="black", linewidth=0.8, label="Pareto frontier")]
    first = ax.legend(
        handles=by_colour, title="backbone", fontsize=LEGEND_PT, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    ax.add_artist(first)
    ax.legend(
        handles=by_marker + frontier,
        title="method",
        fontsize=LEGEND_PT,
        loc="lower left",
        bbox_to_anchor=(1.01, 0),
    )
    fig.set_figwidth(FIGSIZE[0] + 2.2)
    return save_figure(fig, path, stats.attrs["note"])


def plot_gap(table: pd.DataFrame, path: Path) -> Path:
    """Best score minus worst score among methods, per backbone size (the power-of-scale view)."""
    table = one_task(table, "gap")
    stats = mean_std(table, ["backbone", "method"])
    if stats["method"].nunique() < 2:
        raise PetsweepError("gap: needs runs of at least two methods")
    sizes = table.groupby("backbone")["total_params"].first()
    # variants of a method (ranks, learning rates) are configurations of their own, never averaged together
    gap = (
        stats.groupby("backbone")["mean"].agg(lambda s: s.max() - s.min()).reindex(sizes.sort_values().index)
    )
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(sizes.loc[gap.index], gap.to_numpy(), marker="o")
    for backbone, value in gap.items():
        ax.annotate(backbone, (sizes[backbone], value), fontsize=8)
    metric = metric_label(table)
    ax.set(xscale="log", xlabel="backbone parameters", ylabel=f"{metric}: best minus worst method")
    return save_figure(fig, path, stats.attrs["note"].replace(", bars: ± 1 std", ""))


def plot_generalization(table: pd.DataFrame, path: Path) -> Path:
    """Train-subset score minus test score per method (mean +- std over runs)."""
    table = one_task(table, "generalization")
    table = table.assign(gap=table["train_subset_score"] - table["score"])
    if table[table["status"] == "COMPLETED"].empty:
        raise PetsweepError("generalization: no COMPLETED runs in the table")
    stats = mean_std(table, ["method"], "gap")
    fig, ax = plt.subplots(figsize=(max(FIGSIZE[0], 0.9 * len(stats)), FIGSIZE[1]))
    ax.bar(
        [label(m, v) for m, v in zip(stats["method"], stats["variant"])],
        stats["mean"],
        yerr=stats["std"].fillna(0),
        capsize=4,
    )
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor", fontsize=7)
    metric = metric_label(table).removeprefix("test ")
    ax.set(ylabel=f"{metric}: train subset minus test", title="generalization gap")
    return save_figure(fig, path, stats.attrs["note"])


def plot_threshold(table: pd.DataFrame, path: Path) -> Path:
    """Low and high thresholds per task, backbone, PET method and variant, with their 90% bootstrap
    intervals over seeds.

    "Not reached" (no budget of the grid gets there) is drawn at the top edge, above the largest budget,
    and an interval that reaches it is drawn up to that edge with an arrow.
    """
    found = thresholds(table)
    if found.empty or np.isinf(found["low_threshold"]).all():
        raise PetsweepError(
            "threshold: no budget axis (PET runs at several parameter counts) beats random guess"
        )
    budgets = table.loc[(table["status"] == "COMPLETED") & (table["method"] != "full"), "trainable_params"]
    beyond = float(budgets.max()) * 3  # where "not reached" is drawn
    fig, ax = plt.subplots(figsize=(max(FIGSIZE[0], 1.1 * len(found)), FIGSIZE[1]))
    labels = [
        f"{r.task}\n{r.backbone}\n{r.method}" + (f"\n{r.variant}" if r.variant else "")
        for r in found.itertuples()
    ]
    x = np.arange(len(found))
    for name, marker, text, shift in (
        ("low", "v", "low: beats random guess", -0.08),
        ("high", "^", "high: within epsilon of full FT", 0.08),
    ):
        if found[f"{name}_threshold"].isna().all():
            continue
        value = found[f"{name}_threshold"].clip(upper=beyond)
        lo, hi = found[f"{name}_ci_lo"].clip(upper=beyond), found[f"{name}_ci_hi"].clip(upper=beyond)
        interval = [(value - lo).clip(lower=0), (hi - value).clip(lower=0)]
        bars = ax.errorbar(x + shift, value, yerr=np.nan_to_num(interval), fmt=marker, capsize=3, label=text)
        for xi, high in zip(x + shift, found[f"{name}_ci_hi"]):
            if np.isinf(high):
                ax.annotate(
                    "",
                    (xi, beyond * 1.6),
                    (xi, beyond),
                    arrowprops={"arrowstyle": "->", "color": bars[0].get_color()},
                )
    ax.axhline(beyond, color="grey", linestyle=":", linewidth=0.8)
    ax.annotate("not reached", (x[0] - 0.2, beyond), fontsize=7, color="grey", va="bottom", ha="left")
    ax.set(yscale="log", ylabel="tunable parameters", xticks=x)
    ax.set_xticklabels(labels, fontsize=7)
    ax.legend(fontsize=8, loc="lower right")
    not_reached = found.filter(like="_not_reached").max().max()
    note = (
        f"90% bootstrap intervals over seeds ({int(found['seeds_per_budget'].min())}+ per budget); up to "
        f"{not_reached:.0%} of draws reach no budget (counted as beyond the largest)"
    )
    missing = found["high_threshold"].isna().sum()
    if missing:
        note += f"; no high threshold for {missing} of {len(found)} (no full FT run to compare with)"
    return save_figure(fig, path, note)


def plot_convergence(table: pd.DataFrame, path: Path) -> Path:
    """Dev score vs training step (mean over seeds, from each run's metrics.jsonl): a panel per backbone, a
    line per method, variant and budget (LoRA lines named by rank), never averaged across them."""
    table = one_task(table, "convergence")
    done, keys = with_variants(table, ["backbone", "method", "trainable_params"])
    ranks = rank_of(table)
    budgets = done.groupby(["backbone", "method"])["trainable_params"].nunique()
    rows = []
    for run in done.itertuples():
        log = Path(run.run_dir) / "metrics.jsonl"
        key = f"dev_{run.metric}"
        name = label(run.method, run.variant)
        budget = ranks.get((run.task, run.backbone, run.method, run.trainable_params))
        if budget or budgets[(run.backbone, run.method)] > 1:
            name += f", {budget or f'{run.trainable_params:,} params'}"
        for line in log.read_text().splitlines() if log.exists() else []:
            entry = json.loads(line)
            if key in entry:
                rows.append(
                    {"backbone": run.backbone, "line": name, "step": entry["step"], "score": entry[key]}
                )
    if not rows:
        raise PetsweepError("convergence: no per-eval dev scores (metrics.jsonl) next to the table's runs")
    curves = pd.DataFrame(rows).groupby(["backbone", "line", "step"])["score"].agg(["mean", "count"])
    curves = curves.reset_index()
    backbones = by_size(table, curves["backbone"].unique())
    fig, axes = plt.subplots(
        1, len(backbones), squeeze=False, sharey=True, figsize=(FIGSIZE[0] * len(backbones) / 1.4, 5.4)
    )
    for backbone, ax in zip(backbones, axes.flat):
        for line, points in curves[curves["backbone"] == backbone].groupby("line"):
            ax.plot(points["step"], points["mean"], marker="o", markersize=3, label=line)
        ax.set_title(backbone, fontsize=LABEL_PT + 1)
        ax.set_xlabel("training step", fontsize=LABEL_PT)
        ax.tick_params(labelleft=True)
    axes[0, 0].set_ylabel(metric_label(table, "dev"), fontsize=LABEL_PT)
    top = shared_legend(fig, axes, columns=3)
    note = pooled_note(keys, curves["count"], seeds_in=table.columns).replace(", bars: ± 1 std", "")
    return save_figure(fig, path, note, top)


def plot_memory(table: pd.DataFrame, path: Path) -> Path:
    """Peak memory vs batch size per method (and variant)."""
    table = one_task(table, "memory")
    column = "cfg.trainer.batch_size"
    if column not in table or table[column].nunique() < 2:
        raise PetsweepError("memory: needs runs at two or more batch sizes (sweep trainer.batch_size)")
    stats = mean_std(table, ["method", column], "peak_memory_mb")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for (method, variant), rows in stats.groupby(["method", "variant"]):
        ax.plot(rows[column], rows["mean"], marker="o", label=label(method, variant))
    ax.set(xlabel="batch size", ylabel="peak memory (MB)", title="memory")
    ax.legend(fontsize=8)
    return save_figure(fig, path, stats.attrs["note"])
