"""Analysis of petsweep sweeps: one tidy table of runs, thresholds and figures (importable from notebooks).

from analysis import collect, thresholds, plot
table = collect(["runs/cpu_demo"])
plot(table, "curves", "curves.png")
"""

from analysis.apet import apet_pairs
from analysis.curves import mean_std, pareto_front
from analysis.load import collect, load, save
from analysis.plots import KINDS, plot
from analysis.thresholds import thresholds
from analysis.transfer import transfer_scores

__all__ = [
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
