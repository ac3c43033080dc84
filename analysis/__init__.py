"""Analysis of petsweep sweeps: one tidy table of runs, thresholds and figures (importable from notebooks).

from analysis import collect, thresholds, plot
table = collect(["runs/cpu_demo"])
plot(table, "curves", "curves.png")

The figures' names are imported from their modules when first asked for (PEP 562): `petsweep collect` needs
the table alone, and importing matplotlib cost it ~1.2 s of its ~2.7 s at 10^4 runs (#25). The table's and
the thresholds' names are imported here, as their modules are named too (`analysis.load` is a module and a
function: bound here after the module, the function is what `from analysis import load` gives).
"""

from __future__ import annotations

import importlib

from analysis.load import collect, load, save
from analysis.thresholds import thresholds

_FIGURES = {  # name -> its module, which imports matplotlib
    "KINDS": "analysis.plots",
    "apet_pairs": "analysis.apet",
    "mean_std": "analysis.curves",
    "pareto_front": "analysis.curves",
    "plot": "analysis.plots",
    "transfer_scores": "analysis.transfer",
}
__all__ = [  # the figures' names resolve through __getattr__
    "KINDS",
    "apet_pairs",
    "collect",
    "load",
    "mean_std",
    "pareto_front",
    "plot",
    "save",
    "thresholds",
    "transfer_scores",
]


def __getattr__(name: str):
    if name not in _FIGURES:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_FIGURES[name]), name)
    globals()[name] = value  # asked once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FIGURES))
