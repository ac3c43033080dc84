"""The APET view (Su et al., 2023, finding 1): APET(X) against X at the same budget, across backbone sizes.

An APET run is a row whose `cfg.apet.scale` is set; APET(X) is one whose scale names a method X (its budget
is X's parameter count on that backbone). Its reference is the runs of method X on the same backbone and
task, without APET, at that same count. Integer scales carry no X to compare with: they belong to the budget
views (curves, threshold).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.curves import FIGSIZE, log_ticks, metric_label, save_figure, shared_legend
from analysis.grouping import describe, shared_settings, short_name, with_variants
from petsweep.spec.errors import PetsweepError

SCALE = "cfg.apet.scale"


def _is_method_name(scale) -> bool:
    return isinstance(scale, str) and scale.strip() != "" and not scale.strip().lstrip("-").isdigit()


def apet_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """Per (task, backbone, X): X's and APET(X)'s mean/std/count over seeds, their gap, and the backbone size.

    X's runs are those at APET(X)'s budget (pet_params equal): a sweep over X's sizes (LoRA ranks 1, 8 and
    32) keeps only the size APET(X) was budgeted from. A key of X's or APET's own config that varies among
    the runs compared (a learning rate, X's alpha) splits a pair into variants, named in `x_label`
    and `apet_label`, instead of being averaged. Any key outside them (steps, pooling, the task's setup) must
    match: APET(X) is paired only with X trained the same way (analysis.grouping.shared_settings), the
    pair's `settings` column (also in both labels) names those keys where they differ in the table.

    Raises:
        PetsweepError: no APET(X) run, or no run of any such X to compare with.
    """
    if SCALE not in table or not table[SCALE].map(_is_method_name).any():
        raise PetsweepError(
            f"--kind apet: needs APET runs at a method's budget ({SCALE} = a method name, e.g. "
            "apet.scale=lora) beside that method's own runs; this table has none"
        )
    done = table[table["status"] == "COMPLETED"]
    apet = done[done[SCALE].map(_is_method_name)].assign(x=lambda t: t[SCALE].str.strip())
    plain = done[done[SCALE].isna()].assign(x=lambda t: t["method"])
    keys = ["task", "backbone", "x", "pet_params"]
    # APET(X) is compared with X trained the same way: every key that differs among them but X's and APET's
    # own (cfg.method.*, cfg.apet.*) must match (#26 review: APET paired with LoRA runs of other steps and
    # pooling); `settings` names them where they differ
    both = pd.concat([apet, plain])
    settings = shared_settings(both, keys, own=("cfg.method.", "cfg.apet."))
    both = both.assign(settings=describe(both, settings))
    apet, plain = both.loc[both[SCALE].map(_is_method_name)], both.loc[both[SCALE].isna()]
    stats = {}
    for name, rows in (("x", plain), ("apet", apet)):
        rows, _ = with_variants(rows, [*keys, *settings])
        named = [", ".join(p for p in parts if p) for parts in zip(rows["variant"], rows["settings"])]
        label = rows["x"].where(
            [n == "" for n in named], rows["x"] + " [" + pd.Series(named, rows.index) + "]"
        )
        stats[name] = (
            rows.assign(**{f"{name}_label": label})
            .groupby([*keys, "settings", f"{name}_label"])["score"]
            .agg(["mean", "std", "count"])
            .add_prefix(f"{name}_")
            .reset_index(f"{name}_label")
        )
    pairs = stats["apet"].join(stats["x"], how="inner").reset_index()
    if pairs.empty:
        raise PetsweepError(
            f"--kind apet: APET runs of {sorted(apet['x'].unique())} have no runs of that method "
            "at the same budget on the same backbone and task"
            + (f" under the same settings ({', '.join(short_name(k) for k in settings)})" if settings else "")
            + " to compare with"
        )
    sizes = done.groupby("backbone")["total_params"].first()
    return pairs.assign(gap=pairs["apet_mean"] - pairs["x_mean"], total_params=pairs["backbone"].map(sizes))


VARIANT_STYLES = [("--", "s"), (":", "^"), ("-.", "v"), ((0, (5, 1)), "D")]  # APET(X) variants of one X


def plot_apet(table: pd.DataFrame, path: Path) -> Path:
    """Left: X (solid) and APET(X) (dashed; its variants dotted, ...) vs backbone size; right: APET(X) - X.
    One panel pair per task; one colour per X line (X's variants and settings have colours of their own)."""
    pairs = apet_pairs(table).sort_values("total_params")
    tasks = sorted(pairs["task"].unique())
    fig, axes = plt.subplots(
        len(tasks), 2, figsize=(FIGSIZE[0] * 2 / 1.4, FIGSIZE[1] * len(tasks)), squeeze=False
    )
    # a colour per X line (X, or X's variant or settings): two pairs on one backbone stay told apart
    colors = dict(
        zip(sorted(pairs["x_label"].unique()), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    )
    for (score_ax, gap_ax), task in zip(axes, tasks):
        rows_of_task = pairs[pairs["task"] == task]
        for (_x, x_label), rows in rows_of_task.groupby(["x", "x_label"]):
            reference = rows.drop_duplicates("backbone")
            score_ax.errorbar(
                reference["total_params"],
                reference["x_mean"],
                yerr=reference["x_std"].fillna(0),
                color=colors[x_label],
                marker="o",
                capsize=3,
                label=x_label,
            )
            for (linestyle, marker), (apet_label, variant) in zip(
                VARIANT_STYLES * 4, rows.groupby("apet_label")
            ):
                style = dict(color=colors[x_label], linestyle=linestyle, marker=marker)
                score_ax.errorbar(
                    variant["total_params"],
                    variant["apet_mean"],
                    yerr=variant["apet_std"].fillna(0),
                    capsize=3,
                    label=f"APET({apet_label})",
                    **style,
                )
                gap_ax.errorbar(
                    variant["total_params"],
                    variant["gap"],
                    yerr=np.hypot(variant["apet_std"], variant["x_std"]).fillna(0),
                    capsize=3,
                    label=f"APET({apet_label}) - {x_label}",
                    **style,
                )
        gap_ax.axhline(0, color="grey", linestyle=":")
        score_ax.set(
            xscale="log",
            xlabel="backbone parameters",
            ylabel=f"{metric_label(table)} (mean ± 1 std over seeds)",
            title=f"{task}: X and APET(X) at equal budget",
        )
        gap_ax.set(
            xscale="log",
            xlabel="backbone parameters",
            ylabel=f"{metric_label(table)}: APET(X) minus X",
            title=f"{task}: gap",
        )
        log_ticks(score_ax), log_ticks(gap_ax)
    # one legend above the panels, over none of their points (#26 review: legends inside them hid points);
    # a gap line has its APET(X) line's colour and style
    top = shared_legend(fig, axes[:, 0], columns=3)
    counts = pd.concat([pairs["apet_count"], pairs["x_count"]])
    low, high = int(counts.min()), int(counts.max())
    note = (
        f"points: mean over {low if low == high else f'{low}-{high}'} seeds each (APET(X): seed and "
        "apet.seed; X: seed), bars: ± 1 std; APET(X): APET given X's parameter count on that "
        "backbone, X: X's own runs at that count; gap (right, in the APET(X) line's style): APET(X) mean "
        "minus X mean, bars: ± sqrt(std_APET² + std_X²)"
    )
    return save_figure(fig, path, note, top)
