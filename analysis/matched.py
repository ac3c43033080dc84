"""The matched-budget view: score vs backbone size at one parameter budget, a line per method.

Runs of a matched sweep (`run.py -m method=lora,adapter,prompt,bitfit,apet budget=bitfit backbone=...`) carry
what their budget resolved to (`budget.requested`, `budget.target`: analysis.load; an APET run's is its
apet.scale). Each point is the mean over seeds with bars of ± 1 std; `method=head` (the trained task head
alone, no budget) is drawn as the baseline in every panel of its task, the random-guess score as a horizontal
line.
A panel per task and budget: budgets are never pooled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.curves import (
    DODGE_PT,
    FIGSIZE,
    LABEL_PT,
    LEGEND_PT,
    MARKERS,
    dodge,
    dodge_points,
    facets,
    first_column,
    label,
    line_colours,
    mean_std,
    metric_label,
    natural_groups,
    natural_key,
    save_figure,
)
from analysis.grouping import NO_VALUE, _text
from petsweep.spec.errors import PetsweepError

# --x: the column a backbone's size is read from, and the axis label
X_AXES = {
    "total": ("total_params", "backbone parameters (total)"),
    "nonembedding": ("nonembedding_params", "backbone parameters (non-embedding)"),
    "depth": ("depth", "backbone depth (layers)"),
}
HEAD = "head"
HEAD_LABEL = "head only"
HEAD_STYLE = {"color": "grey", "linestyle": "--"}
GUESS_STYLE = {"color": "black", "linestyle": ":", "linewidth": 1.0}
BUDGET = "matched_budget"  # the budget as text (a method name or a count), one panel column per value


def _count(value) -> str:
    return f"{int(value):,}" if pd.notna(value) else "?"


def budget_note(runs: pd.DataFrame) -> str:
    """What each budget is: `budget=bitfit`: BitFit's count on each backbone (its range of targets), an
    integer the same count everywhere; and how near the runs came (achieved / target)."""
    parts = []
    for (budget,), rows in natural_groups(runs, [BUDGET]):
        targets = pd.to_numeric(rows["budget.target"], errors="coerce")
        ratio = pd.to_numeric(rows["budget.achieved"], errors="coerce") / targets
        lo, hi = targets.min(), targets.max()
        span = _count(lo) if lo == hi else f"{_count(lo)}-{_count(hi)}"
        what = "its count" if budget.isdigit() else f"{budget}'s count on each backbone"
        text = f"budget={budget}: {what} ({span} PET parameters)"
        if ratio.notna().any():  # how far the achieved counts are from it at most
            text += f", achieved within {(ratio - 1).abs().max():.1%}"
        parts.append(text)
    return "; ".join(parts)


def _size(value: float) -> str:
    """12226560 -> 12.2M."""
    from matplotlib.ticker import EngFormatter

    return EngFormatter(places=1, sep="")(value)


def backbone_ticks(ax, points: pd.DataFrame, x: str) -> None:
    """A tick at each backbone the panel draws, naming it (#26 review: ticks of 12M, 14M named no backbone;
    a single depth got ticks of 0.8, 1.0, 1.2): `minilm-l1` over its size (12.2M) or under its depth (an
    integer). One YAML cut to several depths names each cut's depth too."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter, NullLocator

    names = points.groupby("backbone")["x"].nunique()
    texts: dict[float, list[str]] = {}
    for row in points.drop_duplicates(["backbone", "x"]).sort_values("x").itertuples():
        cut = f" ({int(row.depth)} layers)" if names[row.backbone] > 1 and x != "depth" else ""
        texts.setdefault(float(row.x), []).append(f"{row.backbone}{cut}")
    ticks = sorted(texts)
    labels = [
        f"{int(t)}\n" + "\n".join(texts[t]) if x == "depth" else "\n".join(texts[t]) + f"\n{_size(t)}"
        for t in ticks
    ]
    axis = ax.xaxis
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FixedFormatter(labels))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=LEGEND_PT)
    lo, hi = ticks[0], ticks[-1]
    if x == "depth":  # at least a layer either side, so the axis reads as whole layers
        ax.set_xlim(min(lo - 0.5, ax.get_xlim()[0]), max(hi + 0.5, ax.get_xlim()[1]))
    elif lo == hi:
        ax.set_xlim(lo / 1.25, hi * 1.25)


def _legend(fig, axes) -> float:
    """One legend above the panels: the methods, then the head-only baseline, then random guess (matplotlib
    lists an axes' plain lines before its error-bar lines); returns the height share the panels may use."""
    handles: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    order = sorted(handles, key=lambda t: (t == "random guess", t.startswith(HEAD_LABEL)))
    ncol = min(4, len(order))
    rows = -(-len(order) // ncol)
    fig.legend(
        [handles[t] for t in order], order, loc="upper center", ncol=ncol, fontsize=LEGEND_PT, frameon=False
    )
    return 1 - (0.03 + 0.03 * rows) * 4.8 / fig.get_figheight()


def plot_matched(table: pd.DataFrame, path: Path, x: str = "total") -> Path:
    """Test score vs backbone size (log x; `x="depth"`: layers) at matched budgets: a panel per task and
    budget, a line per method (and variant), the head-only baseline dashed grey, random guess dotted."""
    if x not in X_AXES:
        raise PetsweepError(f"--x {x!r}: choose one of: {', '.join(X_AXES)}")
    column, xlabel = X_AXES[x]
    done = table[table["status"] == "COMPLETED"].copy()
    if column not in done or done.empty or done[column].isna().all():
        raise PetsweepError(
            f"matched --x {x}: the table has no {column} values (a table collected before the column "
            "existed: collect it again)"
        )
    if "budget.requested" not in done:
        raise PetsweepError(
            "matched: the table has no budget.requested column (a table collected before budgets were "
            "recorded, like docs/cpu_demo/table.csv): collect it again from its sweep dirs"
        )
    done[BUDGET] = done["budget.requested"].map(_text)
    is_head = done["method"] == HEAD
    runs = done[~is_head & (done[BUDGET] != NO_VALUE)]
    left_out = done[~is_head & (done[BUDGET] == NO_VALUE)]
    if runs.empty:
        raise PetsweepError(
            "matched: no COMPLETED run with a budget in the table (budget=X, or APET's apet.scale); "
            "run e.g. run.py -m method=lora,adapter,prompt,bitfit,apet budget=bitfit backbone=..."
        )
    head = done[is_head & done["task"].isin(set(runs["task"]))]
    missing = sorted(set(runs["backbone"]) | set(head["backbone"]))
    missing = [b for b in missing if done.loc[done["backbone"] == b, column].isna().all()]
    if missing:
        raise PetsweepError(
            f"matched --x {x}: backbone(s) {', '.join(missing)} have no {column} in the table "
            "(collected before the column existed: collect it again)"
        )
    # a point is a backbone as it ran: one YAML cut to several depths (backbone.num_layers) is several
    # points, and the knob values a budget solves to on each are never told apart as variants
    point = ["backbone", *dict.fromkeys(c for c in ("depth", "total_params", column) if c in done)]
    stats = mean_std(runs, ["task", BUDGET, "method", *point])
    base = mean_std(head, ["task", "method", *point]) if not head.empty else None
    for frame in (stats, base):
        if frame is not None:
            frame["x"] = frame[column].astype(float)
    tasks = sorted(stats["task"].unique())
    budgets = sorted(stats[BUDGET].unique(), key=natural_key)
    # a task's panels share a y axis; at most MAX_COLUMNS panels a row (wrapped)
    width = FIGSIZE[0] if len(budgets) == 1 else 4.6
    fig, grid = facets([budgets] * len(tasks), (width, FIGSIZE[1]))
    axes = [ax for row in grid for ax in row]
    guess = done.groupby("task")["random_guess_score"].mean()
    names = [label(m, v) for (m, v), _ in natural_groups(stats, ["method", "variant"])]
    markers = dict(zip(names, MARKERS * 4))
    colours = line_colours(names)  # a method's colour in every panel, as in the legend
    ylabel = metric_label(done)
    for (task, budget), ax in zip([(t, b) for t in tasks for b in budgets], axes):
        panel = stats[(stats["task"] == task) & (stats[BUDGET] == budget)]
        if panel.empty:
            ax.axis("off")
            continue
        lines = [(key, rows, False) for key, rows in natural_groups(panel, ["method", "variant"])]
        if base is not None:
            lines += [
                (key, rows, True)
                for key, rows in natural_groups(base[base["task"] == task], ["method", "variant"])
            ]
        for index, ((method, variant), rows, baseline) in enumerate(lines):
            rows = rows.sort_values(["x", "backbone"])
            name = label(HEAD_LABEL, variant) if baseline else label(method, variant)
            style = HEAD_STYLE if baseline else {"marker": markers[name], "color": colours[name]}
            drawn = ax.errorbar(
                rows["x"], rows["mean"], yerr=rows["std"].fillna(0), capsize=3, label=name, **style
            )
            if baseline:
                drawn.lines[0].set_marker("s")
            dodge(ax, [drawn.lines[0], *drawn.lines[1], *drawn.lines[2]], dodge_points(index, len(lines)))
        ax.axhline(guess.get(task, np.nan), label="random guess", **GUESS_STYLE)
        ax.margins(x=0.12)  # room for the points set apart at the first and last backbone
        if x != "depth":
            ax.set_xscale("log")
        shown = [panel] if base is None else [panel, base[base["task"] == task]]
        backbone_ticks(ax, pd.concat(shown), x)
        ax.set_title(f"{task} / budget={budget}", fontsize=LABEL_PT + 1)
        ax.set_xlabel(xlabel, fontsize=LABEL_PT)
        ax.set_ylabel(ylabel if first_column(ax) else "", fontsize=LABEL_PT)
        ax.tick_params(labelleft=True)
    top = _legend(fig, axes)
    note = f"{budget_note(runs)}. {stats.attrs['note']}"
    if base is not None:
        note += f"; {HEAD_LABEL} (dashed grey): the trained task head alone, no PET parameters"
    else:
        note += f"; no {HEAD_LABEL} runs (method=head) in the table"
    note += f"; dotted: random guess; lines set {DODGE_PT:g} pt apart at each backbone"
    if len(left_out):
        methods = ", ".join(sorted(left_out["method"].unique()))
        note += f"; left out: {len(left_out)} runs without a budget ({methods})"
    return save_figure(fig, path, note, top)
