"""Figures of score against budget and scale (matplotlib; PNG or PDF by the file's suffix).

Each `plot_<kind>(table, path)` draws one figure (analysis.plots maps the CLI's `--kind` to them). A kind
the data cannot support raises PetsweepError with the reason (no traceback).
"""

from __future__ import annotations

import json
import re
import textwrap
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
MARKERS = "osD^vP*Xph<>"  # a marker per line: points at one budget stay told apart
DODGE_PT = 7.0  # lines of a panel that share a budget are set this far apart, side by side


def natural_key(text) -> tuple:
    """Sort key that orders the numbers inside labels by value: r=1, r=8, r=32 (not r=1, r=32, r=8)."""
    parts = re.split(r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)", str(text))
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts) if p)


def natural_groups(frame: pd.DataFrame, keys: list[str]):
    """`frame.groupby(keys)`, its groups in natural order of their keys."""
    groups = list(frame.groupby(keys, dropna=False))
    return sorted(groups, key=lambda item: tuple(natural_key(k) for k in np.atleast_1d(item[0])))


def log_ticks(ax, axis: str = "x") -> None:
    """Readable ticks on a log axis: no minor tick labels (over less than a decade matplotlib labels them
    all, overlapping); an axis spanning under two decades gets a few round values, labelled 12k, 14M."""
    from matplotlib.ticker import EngFormatter, FixedLocator, MaxNLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    target.set_minor_formatter(NullFormatter())
    if lo <= 0 or hi / lo >= 100:
        return
    ticks = [t for t in MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi]
    if len(ticks) < 2:
        ticks = [lo, hi]
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(EngFormatter(sep="", places=None))


def dodge_points(index: int, count: int) -> float:
    """Sideways shift (points) of line `index` of `count` lines drawn at one budget."""
    return (index - (count - 1) / 2) * DODGE_PT


def dodge(ax, artists, points: float):
    """Shift a line's artists sideways by `points` on the page; their data (the budget) stay as they are."""
    from matplotlib.transforms import ScaledTranslation

    for artist in artists:
        artist.set_transform(ax.transData + ScaledTranslation(points / 72, 0, ax.figure.dpi_scale_trans))


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


def line_colours(labels) -> dict[str, str]:
    """One colour per line label for a whole figure, given every panel's labels (#26): a line keeps its
    colour in each panel, and in the shared legend, which takes its handles from the first panel that drew
    the label; a panel's own draw order (matplotlib's colour cycle) gave a method another colour where a
    panel lacked one. Labels in natural order; over 10 lines take tab20's 20 colours (markers differ too).
    """
    from matplotlib.colors import to_hex

    names = sorted(dict.fromkeys(labels), key=natural_key)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(names) > len(colours):
        colours = [to_hex(c) for c in plt.get_cmap("tab20").colors]
    return {name: colours[index % len(colours)] for index, name in enumerate(names)}


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
    bottom = 0.0
    if note:  # wrapped to the figure's width (about 0.5 em a character), never cut at its edges
        lines = textwrap.wrap(note, width=int(fig.get_figwidth() * 72 / (LEGEND_PT * 0.56)))
        fig.text(0.5, 0.005, "\n".join(lines), ha="center", va="bottom", fontsize=LEGEND_PT)
        bottom = (0.02 + 0.16 * len(lines)) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, top))
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
    lines = [label(m, v) for (m, v), _ in natural_groups(stats, ["method", "variant"])]
    markers = dict(zip(lines, MARKERS * 4))  # one marker and one colour per line in every panel
    colours = line_colours(lines)
    dodged = False
    for (task, backbone), ax in zip([(t, b) for t in tasks for b in backbones], axes.flat):
        panel = stats[(stats["task"] == task) & (stats["backbone"] == backbone)]
        if panel.empty:
            ax.axis("off")
            continue
        groups = natural_groups(panel, ["method", "variant"])
        budgets = panel["trainable_params"]
        shared = set(budgets[budgets.duplicated()])  # budgets where lines would hide each other
        crowded = [key for key, rows in groups if shared & set(rows["trainable_params"])]
        dodged |= bool(crowded)
        for (method, variant), rows in groups:
            key = (method, variant)
            shift = dodge_points(crowded.index(key), len(crowded)) if key in crowded else 0.0
            rows = rows.sort_values("trainable_params")
            drawn = ax.errorbar(
                rows["trainable_params"],
                rows["mean"],
                yerr=rows["std"].fillna(0),
                marker=markers[label(method, variant)],
                color=colours[label(method, variant)],
                capsize=3,
                label=label(method, variant),
            )
            if shift:  # side by side, not behind each other
                dodge(ax, [drawn.lines[0], *drawn.lines[1], *drawn.lines[2]], shift)
            for params, mean in zip(rows["trainable_params"], rows["mean"]):
                if (task, backbone, method, params) in ranks:
                    ax.annotate(
                        ranks[(task, backbone, method, params)],
                        (params, mean),
                        textcoords="offset points",
                        xytext=(4 + shift, -10),
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
        log_ticks(ax)
        ax.set_title(f"{task} / {backbone}", fontsize=LABEL_PT + 1)
        ax.set_xlabel("tunable parameters", fontsize=LABEL_PT)
        ax.set_ylabel(ylabel if ax in axes[:, 0] else "", fontsize=LABEL_PT)
        ax.tick_params(labelleft=True)
    top = shared_legend(fig, axes)
    note = stats.attrs["note"]
    if dodged:
        note += f"; lines with points at equal budgets are set side by side ({DODGE_PT:g} pt apart)"
    return save_figure(fig, path, note, top)


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
    methods = sorted({label(m, v) for m, v in zip(stats["method"], stats["variant"])}, key=natural_key)
    markers = dict(zip(methods, MARKERS * 4))
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
    log_ticks(ax)
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
    return save_figure(fig, path, stats.attrs["note"].replace(", bars: ± 1 std", ""))  # no bars drawn


def plot_gap(table: pd.DataFrame, path: Path) -> Path:
    """Best minus worst method (mean over seeds) per backbone size (the power-of-scale view), each point
    named by its two methods, with bars of the seed std of that difference: sqrt(std_best^2 + std_worst^2)."""
    table = one_task(table, "gap")
    stats = mean_std(table, ["backbone", "method"])
    if stats["method"].nunique() < 2:
        raise PetsweepError("gap: needs runs of at least two methods")
    sizes = table.groupby("backbone")["total_params"].first()
    # variants of a method (ranks, learning rates) are configurations of their own, never averaged together
    rows = []
    for backbone, points in stats.groupby("backbone"):
        best, worst = points.loc[points["mean"].idxmax()], points.loc[points["mean"].idxmin()]
        rows.append(
            {
                "backbone": backbone,
                "size": sizes[backbone],
                "gap": best["mean"] - worst["mean"],
                "std": float(np.hypot(best["std"], worst["std"])),  # NaN where a method has one seed
                "pair": " − ".join(label(row["method"], row["variant"]) for row in (best, worst)),
            }
        )
    gap = pd.DataFrame(rows).sort_values("size")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.errorbar(gap["size"], gap["gap"], yerr=gap["std"].fillna(0), marker="o", capsize=3)
    for index, row in enumerate(gap.itertuples()):
        last = index == len(gap) - 1 and len(gap) > 1  # the rightmost name reads leftwards, inside the axes
        ax.annotate(f"{row.backbone}\n{row.pair}", (row.size, row.gap), xytext=(-4 if last else 4, 4),
                    textcoords="offset points", fontsize=7, ha="right" if last else "left")  # fmt: skip
    ax.axhline(0, color="grey", linestyle=":", linewidth=0.8)
    metric = metric_label(table)
    ax.set(xscale="log", xlabel="backbone parameters", ylabel=f"{metric}: best minus worst method")
    log_ticks(ax)
    note = stats.attrs["note"].replace(
        "bars: ± 1 std", "bars: ± sqrt(std_best² + std_worst²), the seed std of the difference"
    )
    if gap["std"].isna().any():
        note += "; no bar where a method has a single run"
    return save_figure(fig, path, note)


def plot_generalization(table: pd.DataFrame, path: Path) -> Path:
    """Train-subset score minus test score per method (mean +- std over seeds): a group of bars per method
    (and variant), a bar per backbone (by size) within it, backbones in the legend."""
    table = one_task(table, "generalization")
    table = table.assign(gap=table["train_subset_score"] - table["score"])
    if table[table["status"] == "COMPLETED"].empty:
        raise PetsweepError("generalization: no COMPLETED runs in the table")
    stats = mean_std(table, ["backbone", "method"], "gap")
    stats["name"] = [label(m, v) for m, v in zip(stats["method"], stats["variant"])]
    names = sorted(stats["name"].unique(), key=natural_key)
    backbones = by_size(table, stats["backbone"].unique())
    colors = dict(zip(backbones, plt.get_cmap("viridis_r")(np.linspace(0.15, 0.95, len(backbones)))))
    width = 0.8 / len(backbones)
    fig, ax = plt.subplots(figsize=(max(FIGSIZE[0], 0.35 * len(stats) + 1.5), FIGSIZE[1]))
    for index, backbone in enumerate(backbones):
        bars = stats[stats["backbone"] == backbone].set_index("name").reindex(names)
        ax.bar(
            np.arange(len(names)) + (index - (len(backbones) - 1) / 2) * width,
            bars["mean"],
            width=width,
            yerr=bars["std"].fillna(0),
            capsize=2,
            color=colors[backbone],
            label=backbone,
        )
    ax.set_xticks(np.arange(len(names)), names)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor", fontsize=LEGEND_PT)
    metric = metric_label(table).removeprefix("test ")
    ax.set(ylabel=f"{metric}: train subset minus test", title="generalization gap")
    if len(backbones) > 1:
        ax.legend(title="backbone", fontsize=LEGEND_PT, loc="upper left", bbox_to_anchor=(1.01, 1))
        fig.set_figwidth(fig.get_figwidth() + 1.4)  # room for the legend beside the bars
    return save_figure(fig, path, stats.attrs["note"])


def plot_threshold(table: pd.DataFrame, path: Path) -> Path:
    """Low and high thresholds per task, backbone, PET method and variant, with their 90% bootstrap
    intervals over seeds.

    "Not reached" (no budget of the grid gets there) is drawn at the top edge, above the largest budget,
    and an interval that reaches it is drawn up to that edge with an arrow.
    """
    found = thresholds(table)
    if not found.empty:
        keys = [
            " ".join(str(r[c]) for c in ("task", "backbone", "method", "variant"))
            for _, r in found.iterrows()
        ]
        order = sorted(range(len(found)), key=lambda i: natural_key(keys[i]))
        found = found.iloc[order].reset_index(drop=True)
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
    colours = line_colours(curves["line"])
    fig, axes = plt.subplots(
        1, len(backbones), squeeze=False, sharey=True, figsize=(FIGSIZE[0] * len(backbones) / 1.4, 5.4)
    )
    for backbone, ax in zip(backbones, axes.flat):
        for line, points in natural_groups(curves[curves["backbone"] == backbone], ["line"]):
            line = line[0] if isinstance(line, tuple) else line
            ax.plot(points["step"], points["mean"], marker="o", markersize=3, color=colours[line], label=line)
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
    for (method, variant), rows in natural_groups(stats, ["method", "variant"]):
        ax.plot(rows[column], rows["mean"], marker="o", label=label(method, variant))
    ax.set(xlabel="batch size", ylabel="peak memory (MB)", title="memory")
    ax.legend(fontsize=8)
    return save_figure(fig, path, stats.attrs["note"])
