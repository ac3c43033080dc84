"""Analysis of petsweep sweeps: one tidy table of runs, thresholds and figures (importable from notebooks).

    from analysis import collect, thresholds, plot
    table = collect(["runs/cpu_demo"])
    plot(table, "curves", "curves.png")
"""

from analysis.curves import KINDS, mean_std, pareto_front, plot
from analysis.load import collect, load, save
from analysis.thresholds import thresholds

__all__ = ["KINDS", "collect", "load", "mean_std", "pareto_front", "plot", "save", "thresholds"]
