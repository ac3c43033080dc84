"""The threshold search's decision logic (launchers/threshold_search.py) on curves of known crossings."""

import math

import numpy as np
import pytest

from benchmarks.threshold_search import simulate
from launchers.threshold_search import CellSearch, SearchSettings, Target, isotonic, ladder
from petsweep.errors import ConfigError


def test_targets_parse_and_refuse_in_one_line():
    assert Target.parse("random+0.05") == Target("random", 0.05)
    assert Target.parse("full-0.01").value({"random": 0.2, "full": 0.9}) == pytest.approx(0.89)
    assert str(Target.parse("full")) == "full+0"
    with pytest.raises(ConfigError, match=r"targets='best\+1': .*random, full"):
        Target.parse("best+1")


def test_ladder_spans_the_interval_at_the_resolution():
    budgets = ladder(100, 1_000_000, 2.0)
    assert budgets[0] == 100 and budgets[-1] == 1_000_000 and len(budgets) == 15
    assert all(1.8 < b / a <= 2.0 for a, b in zip(budgets, budgets[1:]))
    with pytest.raises(ConfigError, match="does not bracket"):
        ladder(1000, 100)


def test_isotonic_pools_adjacent_violators():
    assert isotonic([0.1, 0.3, 0.2, 0.4], [1, 1, 1, 1]).tolist() == pytest.approx([0.1, 0.25, 0.25, 0.4])
    assert isotonic([0.5, 0.1], [3, 1]).tolist() == pytest.approx([0.4, 0.4])


def run(search: CellSearch, curve, noise: float, seed: int = 0) -> CellSearch:
    rng = np.random.default_rng(seed)
    while wanted := search.next_runs():
        for budget in wanted:
            search.add(budget, curve(budget) + noise * rng.standard_normal())
    return search


def curve(budget: float) -> float:  # from 0.5 to 0.9; crosses 0.72 at 12,032 (between ladder budgets)
    return 0.5 + 0.4 / (1 + math.exp(-2.5 * (math.log10(budget) - 4)))


def test_a_clean_curve_is_bracketed_by_neighbouring_budgets():
    budgets = ladder(100, 1_000_000)
    search = run(CellSearch(budgets, {"mid": 0.72}), curve, noise=0.002)
    result = search.result("mid")
    assert result["status"] == "found" and result["monotone"]
    assert result["ci_lo"] < 12_032 <= result["ci_hi"] and result["ci_hi"] / result["ci_lo"] <= 2.01
    assert result["ci_lo"] <= result["estimate"] <= result["ci_hi"]
    assert search.runs < len(budgets) * 3 / 2  # far fewer than a grid of the same seeds


def test_targets_outside_the_interval_say_so():
    search = run(CellSearch(ladder(100, 1_000_000), {"high": 0.95, "low": 0.45}), curve, noise=0.002)
    assert search.result("high")["status"] == "not reached" and search.result("high")["ci_hi"] == math.inf
    assert search.result("low")["status"] == "at or below the interval"
    assert search.result("low")["ci_lo"] == 0.0


def test_max_runs_caps_a_cell():
    search = run(CellSearch(ladder(100, 1_000_000), {"mid": 0.7}, SearchSettings(max_runs=5)), curve, 0.05)
    assert search.runs == 5


def test_a_curve_that_falls_is_flagged():
    search = CellSearch(ladder(100, 1600), {"t": 0.5})
    for budget, score in ((100, 0.9), (100, 0.91), (1600, 0.1), (1600, 0.11)):
        search.add(budget, score)
    assert not search.result("t")["monotone"]


def test_intervals_cover_the_true_thresholds_of_a_simulated_study():
    settings = SearchSettings(confidence=0.9, max_seeds=5, max_runs=10_000)
    result = simulate(120, 1, 100, 1_000_000, 2.0, settings, 3)
    assert result["coverage"] >= 0.9
    assert result["runs/grid"] <= 1 / 3  # the goal (0.36 before the futility rule)
