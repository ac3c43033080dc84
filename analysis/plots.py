"""`plot(table, kind, path)`: every figure kind by name, as `petsweep plot --kind` offers them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import curves
from analysis.apet import plot_apet
from analysis.load import check_columns
from analysis.matched import X_AXES, plot_matched
from analysis.transfer import plot_transfer
from petsweep.spec.errors import PetsweepError

FORMATS = (".png", ".pdf", ".svg")
KINDS = {
    "curves": curves.plot_curves,
    "pareto": curves.plot_pareto,
    "gap": curves.plot_gap,
    "generalization": curves.plot_generalization,
    "threshold": curves.plot_threshold,
    "convergence": curves.plot_convergence,
    "memory": curves.plot_memory,
    "apet": plot_apet,
    "transfer": plot_transfer,
    "matched": plot_matched,
}
TAKES_X = ("matched",)  # kinds whose x axis `--x` picks (analysis.matched.X_AXES)


def select(table: pd.DataFrame, where: str | None) -> pd.DataFrame:
    """Rows a pandas query keeps (e.g. "backbone == 'minilm-l6'"; backquote dotted: `cfg.method.r`)."""
    if not where:
        return table
    try:
        kept = table.query(where)
    except Exception as err:  # pandas raises many types for a bad expression; all are the user's input
        raise PetsweepError(
            f"--where {where!r}: not a valid filter on this table ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:120]})"
        ) from None
    if kept.empty:
        raise PetsweepError(f"--where {where!r}: keeps none of the table's {len(table)} runs")
    return kept


def plot(
    table: pd.DataFrame, kind: str, path: str | Path, where: str | None = None, x: str | None = None
) -> Path:
    """Draw figure `kind` of the table's rows (optionally filtered by `where`) into `path` (.png, .pdf or
    .svg: matplotlib writes the format the suffix names); `x` picks the x axis of the kinds in TAKES_X."""
    check_columns(table)
    if kind not in KINDS:
        raise PetsweepError(f"--kind {kind!r}: choose one of: {', '.join(KINDS)}")
    if Path(path).suffix not in FORMATS:
        raise PetsweepError(f"-o {path}: unknown figure format; use {', '.join(FORMATS)}")
    if x is not None and kind not in TAKES_X:
        raise PetsweepError(
            f"--x {x}: only --kind {', '.join(TAKES_X)} takes an x axis ({', '.join(X_AXES)})"
        )
    return KINDS[kind](select(table, where), Path(path), **({"x": x} if x is not None else {}))
