"""Threshold vs backbone size with intervals, from a threshold search's table (launchers.threshold_sweep)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

# what a target's reference is, for the caption ("full-0.01": full FT's mean score minus 0.01)
REFERENCES = {"full": "full fine-tuning's mean score", "random": "the random-guess score"}
AT_OR_BELOW = "at or below the interval"  # the search's status where the first budget already reaches it


def _score_span(rows: pd.DataFrame) -> str:
    if "target_score" not in rows or rows["target_score"].isna().all():
        return ""
    lo, hi = float(rows["target_score"].min()), float(rows["target_score"].max())
    return f" ({lo:.3f})" if round(lo, 3) == round(hi, 3) else f" ({lo:.3f}-{hi:.3f} by cell)"


def targets_note(table: pd.DataFrame) -> str:
    """Caption: each target in words, with the scores it stood for (#26 review: it named no epsilon)."""
    parts = []
    for target, rows in table.groupby("target"):
        match = re.fullmatch(r"\s*([a-z]+)\s*(?:([+-])\s*([0-9.]+(?:e-?[0-9]+)?))?\s*", str(target))
        if match and match.group(1) in REFERENCES:
            sign, offset = match.group(2), match.group(3)
            words = REFERENCES[match.group(1)]
            if offset:
                words += f" {'plus' if sign == '+' else 'minus'} {offset}"
            parts.append(f"{target}: {words}{_score_span(rows)}")
        else:
            parts.append(f"{target}{_score_span(rows)}")
    return "targets: " + "; ".join(parts)


def threshold_figure(table: pd.DataFrame, path: Path) -> Path:
    """One line per target and cell group (the cell without its backbone): the estimate at each backbone's
    parameter count, with its interval as an error bar. An open end above (not reached) is drawn as an arrow
    up, one below (the search's first budget already reaches the target: at or below the interval) as a
    hollow point with an arrow down, each labelled inside the axes, clear of the other labels and points;
    lines at equal values are set side by side; the caption names each target and its score."""
    import matplotlib.ticker

    from analysis.curves import (
        DODGE_PT,
        LEGEND_PT,
        dodge,
        dodge_points,
        labels_to_place,
        plt,
        save_figure,
        shifted,
    )

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ceiling, floor = 0.0, math.inf  # the arrows' ends: the axes must show them (matplotlib skips an
    # annotation whose point lies outside them)
    table = table.dropna(subset=["backbone_params"]).copy()
    table["group"] = table["cell"].str.replace(r"backbone=\S+\s*", "", regex=True).str.strip()
    groups = list(table.groupby(["target", "group"]))
    any_at_or_below = "status" in table and bool((table["status"] == AT_OR_BELOW).any())
    texts, status_labels = [], []
    for index, ((target, group), rows) in enumerate(groups):
        shift = dodge_points(index, len(groups))  # lines at equal values hid each other
        rows = rows.sort_values("backbone_params")
        x = rows["backbone_params"].to_numpy(float)
        est = rows["estimate"].to_numpy(float)
        lo = rows["ci_lo"].to_numpy(float)
        hi = rows["ci_hi"].to_numpy(float)
        status = rows["status"] if "status" in rows else pd.Series("not reached", index=rows.index)
        status = status.fillna("not reached").to_numpy()
        top = max([v for v in [*est, *hi, *lo] if math.isfinite(v)] or [1.0]) * 4
        shown = [e if math.isfinite(e) else top for e in est]
        label = f"{target} {group}".strip()
        line = ax.plot(x, shown, marker="o", label=label)[0]
        colour = line.get_color()
        drawn = [line]
        for xi, e, a, b, state in zip(x, shown, lo, hi, status):
            # hollow only where the first budget reached the target; an undecided row's interval may open at 0
            # too (#24 review round 3, H7): an arrow down from its estimate, labelled with its status
            below = state == AT_OR_BELOW
            start = e if a <= 0 else a  # nothing was measured below the first budget: no bar down to 1
            drawn.append(ax.vlines(xi, start, b if math.isfinite(b) else top, color=colour, alpha=0.6))
            if below:
                hollow = ax.plot([xi], [e], "o", color=colour, mfc="white", zorder=3)[0]
                drawn.append(hollow)
            if a <= 0:
                ax.annotate("", (xi, e / 2.5), (xi, e), xycoords=shifted(ax, shift),
                            arrowprops={"arrowstyle": "->", "color": colour})  # fmt: skip
                floor = min(floor, e / 4)
            if a <= 0 and not below and math.isfinite(b):
                status_labels.append((state, xi, e / 2.5, colour))
            if not math.isfinite(b):
                ax.annotate("", (xi, top * 1.5), (xi, top), xycoords=shifted(ax, shift),
                            arrowprops={"arrowstyle": "->", "color": colour})  # fmt: skip
                status_labels.append((state if state != "found" else "not reached", xi, top, colour))
                ceiling = max(ceiling, top * 2)
        if shift:
            dodge(ax, drawn, shift)
        for text, xi, y, c in status_labels:
            texts.append(
                ax.annotate(
                    text,
                    (xi, y),
                    xycoords=shifted(ax, shift),
                    xytext=(4, -4),
                    va="top",
                    textcoords="offset points",
                    fontsize=7,
                    color=c,
                )  # fmt: skip
            )
        status_labels = []
    ax.set_xscale("log")
    sizes = sorted(set(table["backbone_params"].astype(float)))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(sizes, [f"{x / 1e6:.1f}M" for x in sizes])  # each backbone's size, not decades
    ax.set_yscale("log")
    ax.margins(x=0.1)
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, floor) if math.isfinite(floor) else low, max(high, ceiling))
    ax.set_xlabel("backbone parameters")
    ax.set_ylabel("threshold (PET parameters the runs ran)")  # result.json pet_params (#24 review F1)
    ax.set_title("Threshold search: estimate and interval per cell")
    handles, names = ax.get_legend_handles_labels()
    if any_at_or_below:  # one entry, not a label at each such point
        handles.append(plt.Line2D([], [], marker="o", color="grey", mfc="white", ls=""))
        names.append("≤ smallest budget tried (hollow, arrow down)")
    ncol = min(2, len(names))
    fig.legend(handles, names, loc="upper center", ncol=ncol, fontsize=LEGEND_PT, frameon=False)
    top_share = 1 - (0.03 + 0.035 * -(-len(names) // ncol)) * 4.8 / fig.get_figheight()
    labels_to_place(ax, texts)  # clear of each other and of the points, inside the axes
    note = targets_note(table)
    if any_at_or_below:
        note += (
            "; hollow, arrow down: the search's first budget already reaches the target (status "
            f"'{AT_OR_BELOW}'): the threshold is at or below the smallest budget tried"
        )
    if len(groups) > 1:
        note += f"; lines set {DODGE_PT:g} pt apart at each backbone"
    return save_figure(fig, path, note, top_share)
