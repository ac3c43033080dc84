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

from analysis.grouping import pooled_note, seeds_present, with_variants  # noqa: E402
from analysis.thresholds import thresholds  # noqa: E402
from petsweep.spec.errors import PetsweepError  # noqa: E402

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


WRAP = (
    34  # characters a line of a legend entry or point label holds at most (#26 review: long variant labels)
)


def wrapped(text: str, width: int = WRAP) -> str:
    """`text` wrapped at spaces into lines of at most `width` characters (a longer word is cut)."""
    return "\n".join(
        line
        for part in str(text).split("\n")
        for line in (textwrap.wrap(part, width, break_on_hyphens=False) or [""])
    )


def log_ticks(ax, axis: str = "x") -> None:
    """Readable ticks on a log axis: no minor tick labels (over less than a decade matplotlib labels them
    all, overlapping); an axis spanning under two decades gets a few round values: 1-2-5 steps where three
    or more fit (2k, 5k, 10k, 20k), else what a linear axis would pick (12M, 14M)."""
    from matplotlib.ticker import EngFormatter, FixedLocator, MaxNLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    target.set_minor_formatter(NullFormatter())
    if lo <= 0 or hi / lo >= 100:
        return
    ticks = []
    for steps in ((1, 2, 5), (1, 2, 3, 5, 7)):  # round values evenly spread on the log axis: 2k, 5k, 10k
        decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
        ticks = [m * 10.0**e for e in decades for m in steps if lo <= m * 10.0**e <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) < 3:  # under a factor of about 3: round values a linear axis would pick (12M, 14M)
        ticks = [
            t for t in MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi
        ]
    if len(ticks) < 2:
        ticks = [lo, hi]
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(EngFormatter(sep="", places=None))


MAX_COLUMNS = 3  # panels per row at most: a wider row of facets wraps (#26 review: 4-5 panels in one row)


def facets(groups: list[list], panel: tuple[float, float]):
    """Panels for `groups` (a list of panel keys per group, e.g. per task), each group's panels wrapped into
    rows of at most MAX_COLUMNS, balanced (4 panels are 2 x 2, 5 are 3 + 2), a group's panels on one y axis
    (shared). `panel` is one panel's (width, height) in inches. Returns (fig, axes: one list per group);
    grid cells no panel takes are removed."""
    columns = max(-(-len(keys) // -(-len(keys) // MAX_COLUMNS)) for keys in groups)
    rows = [-(-len(keys) // columns) for keys in groups]
    fig, grid = plt.subplots(
        sum(rows), columns, squeeze=False, figsize=(panel[0] * columns, panel[1] * sum(rows) + 0.6)
    )
    placed, first = [], 0
    for keys, count in zip(groups, rows):
        cells = list(grid[first : first + count].ravel())
        for ax in cells[1 : len(keys)]:
            ax.sharey(cells[0])  # one scale within a group: its panels compare at a glance
        for ax in cells[len(keys) :]:
            ax.remove()
        placed.append(cells[: len(keys)])
        first += count
    return fig, placed


def first_column(ax) -> bool:
    """Whether `ax` is in the first column of its grid (where the y label goes)."""
    return ax.get_subplotspec().colspan.start == 0


# where a label may go, relative to its point: (dx, dy) in points, horizontal and vertical alignment; the
# first clear of other labels, markers and lines wins (place_labels)
POINT_LABEL_SPOTS = [
    (4, -4, "left", "top"),
    (4, 4, "left", "bottom"),
    (-4, 4, "right", "bottom"),
    (-4, -4, "right", "top"),
    (0, 7, "center", "bottom"),
    (0, -7, "center", "top"),
    (6, -13, "left", "top"),
    (6, 13, "left", "bottom"),
    (-6, 13, "right", "bottom"),
    (-6, -13, "right", "top"),
    (0, 18, "center", "bottom"),
    (0, -18, "center", "top"),
    (0, 28, "center", "bottom"),
    (0, -28, "center", "top"),
    (-8, 24, "right", "bottom"),
    (8, 24, "left", "bottom"),
    (-8, -24, "right", "top"),
    (8, -24, "left", "top"),
    (0, 40, "center", "bottom"),
    (0, -40, "center", "top"),
    (4, 36, "left", "bottom"),
    (-4, 36, "right", "bottom"),
    (4, -36, "left", "top"),
    (-4, -36, "right", "top"),
    (4, 50, "left", "bottom"),
    (-4, 50, "right", "bottom"),
]


def _obstacles(ax, skip) -> tuple[list, np.ndarray]:
    """What a label should not cover, in display coordinates: a box per marker, and points sampled every
    2 px along every line and error bar of `ax` (drawn with their own transforms: dodged lines where they
    are drawn)."""
    from matplotlib.collections import LineCollection
    from matplotlib.transforms import Bbox

    boxes, samples = [], [np.empty((0, 2))]
    px = ax.figure.dpi / 72

    def along(xy):
        xy = xy[np.isfinite(xy).all(axis=1)]
        for a, b in zip(xy[:-1], xy[1:]):
            steps = max(2, int(np.hypot(*(b - a)) / 2))
            samples.append(a + np.linspace(0, 1, steps)[:, None] * (b - a))

    for line in ax.get_lines():
        if not line.get_visible() or line in skip:
            continue
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
        if line.get_marker() not in (None, "", "None", " ", "_", "|") and line.get_markersize() > 0:
            half = line.get_markersize() * px / 2
            boxes += [
                Bbox([[x - half, y - half], [x + half, y + half]]) for x, y in xy if np.isfinite([x, y]).all()
            ]
        if line.get_linestyle() not in ("None", "", " "):
            along(xy)
        elif line.get_marker() in ("_", "|"):  # an error bar's caps: short lines
            half = line.get_markersize() * px / 2
            for x, y in xy:
                along(
                    np.array(
                        [[x - half, y], [x + half, y]]
                        if line.get_marker() == "_"
                        else [[x, y - half], [x, y + half]]
                    )
                )
    for collection in ax.collections:
        if isinstance(collection, LineCollection) and collection.get_visible():
            transform = collection.get_transform()
            for segment in collection.get_segments():
                along(transform.transform(np.asarray(segment, dtype=float)))
    return boxes, np.concatenate(samples)


def place_labels(ax, labels, renderer, spots=POINT_LABEL_SPOTS) -> None:
    """Move each annotation of `labels` (offset points from its point) to the first of `spots` where it
    covers no label placed before it, no marker and no line, inside the axes; where no spot is clear, to the
    one that hides least (#26 review: rank and gap labels over lines, points and each other)."""
    boxes, samples = _obstacles(ax, set())
    frame = ax.get_window_extent(renderer)
    placed = []
    for text in labels:
        best = None
        for rank, (dx, dy, ha, va) in enumerate(spots):
            text.xyann = (dx, dy)
            text.set_horizontalalignment(ha)
            text.set_verticalalignment(va)
            box = text.get_window_extent(renderer).padded(1)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            hidden = (
                (0 if inside else 1e6)
                + 1e4 * sum(box.overlaps(other) for other in placed)
                + 100 * sum(box.overlaps(marker) for marker in boxes)
                + int(((samples[:, 0] > box.x0) & (samples[:, 0] < box.x1) & (samples[:, 1] > box.y0)
                       & (samples[:, 1] < box.y1)).sum())
            )  # fmt: skip
            if best is None or hidden < best[0]:
                best = (hidden, rank)
            if hidden == 0:
                break
        dx, dy, ha, va = spots[best[1]]
        text.xyann = (dx, dy)
        text.set_horizontalalignment(ha)
        text.set_verticalalignment(va)
        placed.append(text.get_window_extent(renderer))


def labels_to_place(ax, labels, spots=POINT_LABEL_SPOTS) -> None:
    """Have save_figure place these annotations (place_labels) once the figure's layout is final."""
    ax.figure.__dict__.setdefault("_labels_to_place", []).append((ax, list(labels), spots))


def dodge_points(index: int, count: int) -> float:
    """Sideways shift (points) of line `index` of `count` lines drawn at one budget."""
    return (index - (count - 1) / 2) * DODGE_PT


def shifted(ax, points: float):
    """ax's data coordinates, shifted sideways by `points` on the page."""
    from matplotlib.transforms import ScaledTranslation

    return ax.transData + ScaledTranslation(points / 72, 0, ax.figure.dpi_scale_trans)


def dodge(ax, artists, points: float):
    """Shift a line's artists sideways by `points` on the page; their data (the budget) stay as they are."""
    for artist in artists:
        artist.set_transform(shifted(ax, points))


def mean_std(
    table: pd.DataFrame, by: list[str], value: str = "score", pool: tuple[str, ...] = (), bars: bool = True
) -> pd.DataFrame:
    """Mean, std and count of `value` over seeds, per group of `by` and variant (COMPLETED runs only).

    Runs of a group that differ in any other config key (see analysis.grouping) are separate variants,
    named in the `variant` column; `stats.attrs["note"]` says what each point pools (and, unless `bars` is
    False, that bars are ± 1 std).
    """
    done, keys = with_variants(table, by, pool)
    stats = done.groupby([*by, "variant"], dropna=False)[value].agg(["mean", "std", "count"]).reset_index()
    stats.attrs["variant_keys"] = keys
    stats.attrs["note"] = pooled_note(keys, stats["count"], pool, seeds_in=seeds_present(table), bars=bars)
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
    if getattr(fig, "_labels_to_place", None):  # placed, the layout redone around them, placed again
        for final in (False, True):
            renderer = fig.canvas.get_renderer()
            for ax, labels, spots in fig._labels_to_place:
                place_labels(ax, labels, renderer, spots)
            if not final:
                fig.tight_layout(rect=(0, bottom, 1, top))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def metric_label(table: pd.DataFrame, split: str = "test") -> str:
    """The y label: the task metric by name and the split it was measured on ("test accuracy")."""
    metrics = sorted(table.loc[table["status"] == "COMPLETED", "metric"].dropna().unique())
    return f"{split} {metrics[0]}" if len(metrics) == 1 else f"{split} score ({', '.join(metrics)})"


def fitted_legend(fig, handles: list, texts: list[str], columns: int, **kwargs):
    """A legend above the panels (loc "upper center") whose entries are wrapped (`wrapped`) and whose
    columns fit the figure's width: fewer columns where a row is too wide, a wider figure where one column
    still is (#26 review: long variant labels ran off the page). Returns the legend."""
    texts = [wrapped(t) for t in texts]
    renderer = fig.canvas.get_renderer()
    for ncol in range(min(columns, len(texts)), 0, -1):
        legend = fig.legend(handles, texts, loc="upper center", ncol=ncol, fontsize=LEGEND_PT, frameon=False,
                            **kwargs)  # fmt: skip
        width = legend.get_window_extent(renderer).width
        if width <= fig.bbox.width * 0.98 or ncol == 1:
            break
        legend.remove()
    if width > fig.bbox.width * 0.98:  # one column and still too wide: a wider figure
        fig.set_figwidth(width / fig.dpi / 0.96)
    return legend


def legend_top(fig, legend, pad_pt: float = 6) -> float:
    """Make room for `legend` (at the top of the figure): the figure grows by the legend's height, so the
    panels keep their size however many wrapped entries it holds; returns the share of the figure's height
    below it, where the panels may reach (measured: neither a gap nor an overlap; #26 review: ~700 px blank
    under the curves legend, and a legend of long labels over the panels)."""
    height = legend.get_window_extent(fig.canvas.get_renderer()).height + pad_pt * fig.dpi / 72
    fig.set_figheight(fig.get_figheight() + height / fig.dpi)
    return 1 - height / fig.bbox.height


def shared_legend(fig, axes, columns: int = 4) -> float:
    """One legend for every panel (labels deduplicated, in first-seen order) above the panels; returns the
    share of the figure's height the panels may use."""
    handles: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    if not handles:
        return 1.0
    return legend_top(fig, fitted_legend(fig, list(handles.values()), list(handles), columns))


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
    # a task's panels on one y scale (backbones compare at a glance), wrapped at MAX_COLUMNS a row
    # each task's own backbones only (#26 review: a task run on one backbone got empty cells before its panel)
    present = {
        t: [b for b in backbones if ((stats["task"] == t) & (stats["backbone"] == b)).any()] for t in tasks
    }
    fig, grid = facets([present[t] for t in tasks], (FIGSIZE[0] / 1.4, FIGSIZE[1]))
    axes = [ax for row in grid for ax in row]
    guess = table.groupby(["task", "backbone"])["random_guess_score"].mean()
    ranks, ylabel = rank_of(table), metric_label(table)
    lines = [label(m, v) for (m, v), _ in natural_groups(stats, ["method", "variant"])]
    markers = dict(zip(lines, MARKERS * 4))  # one marker and one colour per line in every panel
    colours = line_colours(lines)
    dodged = False
    for (task, backbone), ax in zip([(t, b) for t in tasks for b in present[t]], axes):
        panel = stats[(stats["task"] == task) & (stats["backbone"] == backbone)]
        if panel.empty:
            ax.axis("off")
            continue
        groups = natural_groups(panel, ["method", "variant"])
        rank_labels = []
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
                    text = ax.annotate(
                        ranks[(task, backbone, method, params)],
                        (params, mean),
                        xycoords=shifted(ax, shift),  # at its point as drawn, set apart
                        textcoords="offset points",
                        xytext=(4, -4),
                        va="top",
                        fontsize=7,
                    )
                    rank_labels.append(text)
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
        ax.set_ylabel(ylabel if first_column(ax) else "", fontsize=LABEL_PT)
        ax.tick_params(labelleft=True)
        labels_to_place(ax, rank_labels)  # clear of each other, the points and the lines
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
    stats = mean_std(table, ["backbone", "method", "trainable_params"], bars=False)  # no bars drawn
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
    return save_figure(fig, path, stats.attrs["note"])


def best_variants(stats: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Each group of `by`'s best variant (highest mean; mean_std's rows): a method stands for itself at
    its best budget, learning rate, APET scale, ..."""
    return stats.loc[stats.groupby(by, dropna=False)["mean"].idxmax()]


def plot_gap(table: pd.DataFrame, path: Path) -> Path:
    """Best minus worst METHOD (mean over seeds) per backbone size (the power-of-scale view), each method at
    its best variant (budget, learning rate, APET scale: the one with the highest mean, named beside it), each
    point named by its two methods, with bars of the seed std of that difference:
    sqrt(std_best^2 + std_worst^2). #26 review: variants of one method (two APET budgets) were compared as
    if they were methods."""
    table = one_task(table, "gap")
    stats = mean_std(table, ["backbone", "method"])
    if stats["method"].nunique() < 2:
        raise PetsweepError("gap: needs runs of at least two methods")
    sizes = table.groupby("backbone")["total_params"].first()
    several = (stats.groupby(["backbone", "method"])["variant"].nunique() > 1).any()
    rows = []
    for backbone, points in best_variants(stats, ["backbone", "method"]).groupby("backbone"):
        if len(points) < 2:
            continue  # one method on this backbone: no gap
        best, worst = points.loc[points["mean"].idxmax()], points.loc[points["mean"].idxmin()]
        rows.append(
            {
                "backbone": backbone,
                "size": sizes[backbone],
                "gap": best["mean"] - worst["mean"],
                "std": float(np.hypot(best["std"], worst["std"])),  # NaN where a method has one seed
                "pair": wrapped(label(best["method"], best["variant"]))
                + "\n− "
                + wrapped(label(worst["method"], worst["variant"])),
            }
        )
    if not rows:
        raise PetsweepError("gap: no backbone has runs of two methods")
    gap = pd.DataFrame(rows).sort_values("size")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.errorbar(gap["size"], gap["gap"], yerr=gap["std"].fillna(0), marker="o", capsize=3)
    names = [
        ax.annotate(f"{row.backbone}\n{row.pair}", (row.size, row.gap), xytext=(4, 4), va="bottom",
                    textcoords="offset points", fontsize=7)
        for row in gap.itertuples()
    ]  # fmt: skip
    labels_to_place(ax, names)  # inside the axes, clear of each other, the line and the bars
    ax.axhline(0, color="grey", linestyle=":", linewidth=0.8)
    ax.margins(x=0.08, y=0.25)  # room for the names inside the axes
    metric = metric_label(table)
    ax.set(xscale="log", xlabel="backbone parameters", ylabel=f"{metric}: best minus worst method")
    log_ticks(ax)
    note = stats.attrs["note"].replace(
        "bars: ± 1 std", "bars: ± sqrt(std_best² + std_worst²), the seed std of the difference"
    )
    if several:
        note += (
            "; each method at its best variant (highest mean, named in parentheses), never two of one method"
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
    # wrapped: a long variant label pushed the axes off the page (#26 review)
    stats["name"] = [wrapped(label(m, v), 28) for m, v in zip(stats["method"], stats["variant"])]
    names = sorted(stats["name"].unique(), key=natural_key)
    backbones = by_size(table, stats["backbone"].unique())
    colors = dict(zip(backbones, plt.get_cmap("viridis_r")(np.linspace(0.15, 0.95, len(backbones)))))
    width = 0.8 / len(backbones)
    lines = max(
        name.count("\n") + 1 for name in names
    )  # a wrapped name stands upright, its lines side by side
    per_group = max(0.35 * len(stats) / len(names), 0.16 * lines if lines > 1 else 0)
    fig, ax = plt.subplots(figsize=(max(FIGSIZE[0], per_group * len(names) + 1.5), FIGSIZE[1]))
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
    if lines > 1:
        plt.setp(ax.get_xticklabels(), rotation=90, ha="center", va="top", fontsize=LEGEND_PT)
    else:
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor", fontsize=LEGEND_PT)
    metric = metric_label(table).removeprefix("test ")
    ax.set(ylabel=f"{metric}: train subset minus test", title="generalization gap")
    if len(backbones) > 1:
        ax.legend(title="backbone", fontsize=LEGEND_PT, loc="upper left", bbox_to_anchor=(1.01, 1))
        fig.set_figwidth(fig.get_figwidth() + 1.4)  # room for the legend beside the bars
    return save_figure(fig, path, stats.attrs["note"])


THRESHOLD_EPSILON = (
    0.01  # the high threshold's target: full FT's mean minus this (petsweep thresholds' default)
)


def _span(values: pd.Series) -> str:
    """0.199, or 0.770-0.940 where the groups differ."""
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.3f}" if round(lo, 3) == round(hi, 3) else f"{lo:.3f}-{hi:.3f}"


def plot_threshold(table: pd.DataFrame, path: Path) -> Path:
    """Low and high thresholds per task, backbone, PET method and variant, with their 90% bootstrap
    intervals over seeds; the legend and caption name each target (random guess; full FT minus epsilon).

    "Not reached" (no budget of the grid gets there) is drawn at the dotted line above the largest budget,
    an interval that reaches it with an arrow up; a threshold equal to its group's smallest budget (every
    budget tried reaches the target: it lies at or below the ladder's start) is drawn hollow with an arrow
    down, not as if it were measured there.
    """

    found = thresholds(table, epsilon=THRESHOLD_EPSILON)
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
    down = 2.5  # an arrow down spans this factor below its point
    fig, ax = plt.subplots(figsize=(max(FIGSIZE[0], 1.1 * len(found)), FIGSIZE[1]))
    labels = [
        f"{r.task}\n{r.backbone}\n{r.method}" + (f"\n{r.variant}" if r.variant else "")
        for r in found.itertuples()
    ]
    x = np.arange(len(found))
    below_any = False
    for name, marker, text, shift, colour in (
        ("low", "v", "low: mean beats random guess", -0.08, "C0"),
        ("high", "^", f"high: mean within {THRESHOLD_EPSILON:g} of full FT", 0.08, "C1"),
    ):
        if found[f"{name}_threshold"].isna().all():
            continue
        value = found[f"{name}_threshold"].clip(upper=beyond)
        lo, hi = found[f"{name}_ci_lo"].clip(upper=beyond), found[f"{name}_ci_hi"].clip(upper=beyond)
        interval = [(value - lo).clip(lower=0), (hi - value).clip(lower=0)]
        ax.errorbar(
            x + shift, value, yerr=np.nan_to_num(interval), fmt=marker, capsize=3, label=text, color=colour
        )
        below = (found[f"{name}_threshold"] <= found["smallest_budget"]).to_numpy()
        if below.any():  # at or below the smallest budget tried: hollow, an arrow down
            below_any = True
            ax.plot((x + shift)[below], value[below], marker, mfc="white", mec=colour, ls="", zorder=3)
            for xi, v in zip((x + shift)[below], value[below]):
                ax.annotate("", (xi, v / down), (xi, v), arrowprops={"arrowstyle": "->", "color": colour})
        for xi, high in zip(x + shift, found[f"{name}_ci_hi"]):
            if np.isinf(high):
                ax.annotate(
                    "", (xi, beyond * 1.6), (xi, beyond), arrowprops={"arrowstyle": "->", "color": colour}
                )
    ax.axhline(beyond, color="grey", linestyle=":", linewidth=0.8)
    ax.annotate(
        "not\nreached", (1, beyond), xycoords=("axes fraction", "data"), xytext=(3, 0),
        textcoords="offset points", fontsize=7, color="grey", va="center", ha="left", annotation_clip=False,
    )  # fmt: skip  # beside the axes, over no point
    floor = float(found["smallest_budget"].min()) / down
    ax.set(yscale="log", ylabel="tunable parameters", xticks=x, ylim=(floor / 1.5, beyond * 2.4))
    ax.set_xticklabels(labels, fontsize=7)
    handles, texts = ax.get_legend_handles_labels()
    if below_any:
        handles.append(plt.Line2D([], [], marker="v", mfc="white", mec="grey", ls=""))
        texts.append("hollow, arrow down: at or below the smallest budget tried")
    fig.legend(handles, texts, loc="upper center", ncol=3, fontsize=LEGEND_PT, frameon=False)
    top = 1 - 0.06 * 4.8 / fig.get_figheight()  # the legend above the axes: over none of the points
    guess = _span(found["random_guess"])
    note = f"low: the smallest budget whose mean score beats random guessing ({guess})"
    if found["full_ft"].notna().any():
        note += (
            f"; high: the smallest whose mean is within {THRESHOLD_EPSILON:g} of full FT's "
            f"({_span(found['full_ft'].dropna())}, target = full FT - {THRESHOLD_EPSILON:g})"
        )
    not_reached = found.filter(like="_not_reached").max().max()
    note += (
        f"; 90% bootstrap intervals over seeds ({int(found['seeds_per_budget'].min())}+ per budget); up to "
        f"{not_reached:.0%} of draws reach no budget (counted as beyond the largest)"
    )
    if below_any:
        note += (
            "; hollow, arrow down: every budget tried reaches the target, so the threshold is at or below "
            "the smallest budget tried"
        )
    missing = found["high_threshold"].isna().sum()
    if missing:
        note += f"; no high threshold for {missing} of {len(found)} (no full FT run to compare with)"
    return save_figure(fig, path, note, top)


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
            name += f", {budget or f'{int(run.trainable_params):,} params'}"  # a column with gaps is float
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
    note = pooled_note(keys, curves["count"], seeds_in=seeds_present(table), bars=False)
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
