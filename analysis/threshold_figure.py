"""Threshold vs backbone size with intervals, from a threshold search's table (launchers.threshold_sweep)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


def threshold_figure(table: pd.DataFrame, path: Path) -> Path:
    """One line per target and cell group (the cell without its backbone): the estimate at each backbone's
    parameter count, with its interval as an error bar; an open end (not reached) is drawn as an arrow up,
    labelled with the search's status ("not reached"), inside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4))
    placed: dict[tuple, int] = {}  # labels already at a point: the next goes above them
    ceiling = 0.0  # the top of the highest arrow: the axes must show it (matplotlib skips an annotation
    # whose point lies outside them)
    table = table.dropna(subset=["backbone_params"]).copy()
    table["group"] = table["cell"].str.replace(r"backbone=\S+\s*", "", regex=True).str.strip()
    for (target, group), rows in table.groupby(["target", "group"]):
        rows = rows.sort_values("backbone_params")
        x = rows["backbone_params"].to_numpy(float)
        est = rows["estimate"].to_numpy(float)
        lo = rows["ci_lo"].clip(lower=1).to_numpy(float)
        hi = rows["ci_hi"].to_numpy(float)
        top = max([v for v in [*est, *hi, *lo] if math.isfinite(v)] or [1.0]) * 4
        shown = [e if math.isfinite(e) else top for e in est]
        label = f"{target} {group}".strip()
        line = ax.plot(x, shown, marker="o", label=label)[0]
        status = rows["status"] if "status" in rows else pd.Series("not reached", index=rows.index)
        for xi, a, b, state in zip(x, lo, hi, status.fillna("not reached")):
            ax.vlines(xi, a, b if math.isfinite(b) else top, color=line.get_color(), alpha=0.6)
            if not math.isfinite(b):
                ax.annotate("", (xi, top * 1.5), (xi, top), arrowprops={"arrowstyle": "->"})
                last = xi >= table["backbone_params"].max()  # its label reads leftwards, on the page
                below = placed[(xi, top)] = placed.get((xi, top), -1) + 1
                ax.annotate(
                    state if state != "found" else "not reached",
                    (xi, top),
                    xytext=(-4 if last else 4, 2 + 9 * below),
                    textcoords="offset points",
                    ha="right" if last else "left",
                    fontsize=7,
                    color=line.get_color(),
                )
                ceiling = max(ceiling, top * 2)
    ax.set_xscale("log")
    sizes = sorted(set(table["backbone_params"].astype(float)))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(sizes, [f"{x / 1e6:.1f}M" for x in sizes])  # each backbone's size, not decades
    ax.set_yscale("log")
    if ceiling:
        ax.set_ylim(top=max(ax.get_ylim()[1], ceiling))
    ax.set_xlabel("backbone parameters")
    ax.set_ylabel("threshold budget (tunable parameters)")
    ax.set_title("Threshold search: estimate and interval per cell")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
