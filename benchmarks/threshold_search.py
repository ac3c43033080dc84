"""The threshold search's decision logic against a simulated study whose thresholds are known.

    .venv/bin/python benchmarks/threshold_search.py --simulate [--cells 300] [--seed 0] [--noise seed real]
        [--out BENCHMARKS.md]

Each cell's mean score is a logistic function of log10 budget between the random-guess score and full
fine-tuning's, with its own midpoint and slope; each run adds Gaussian seed noise, its sd drawn per cell
from a regime (`--noise`, both by default, each a simulation of its own from `--seed`): "seed" 0.005..0.03,
"real" 0.05..0.12 (this project's own runs: the CPU demo's pooled seed sd is ~0.10). Full fine-tuning is
run with `--reference-seeds` seeds per cell (by the search and the grid alike); the full target is their
mean. The search looks for two targets, random+0.05 and full-0.01, on the ladder of `--low`..`--high` at
`--resolution`; the grid runs every ladder budget with `max_seeds` seeds. Coverage: the share of (cell,
target) pairs whose reported interval holds the true crossing of the true target, counted three ways (all
rows, an undecided row's open or wide interval counting where it holds the truth; all rows with every
undecided row a miss; the rows reported "found"). The last line is `coverage C runs/grid R` of the first
regime named (the "seed" one by default).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import emit  # noqa: E402
from launchers.threshold_search import CellSearch, SearchSettings, Target, ladder  # noqa: E402

TARGETS = ("random+0.05", "full-0.01")


# seed noise sd per cell, drawn uniformly: "seed" is the original simulation's, "real" the noise of this
# project's own runs (the CPU demo's pooled seed sd is ~0.10; its full FT seeds differ by 0.09)
NOISE = {"seed": (0.005, 0.03), "real": (0.05, 0.12)}


def simulated_cell(rng: np.random.Generator, low: int, high: int, noise=NOISE["seed"]) -> dict:
    """A curve whose crossing of both targets lies inside [low, high] in most cells (not all: the search
    must say "not reached" or "below the interval" truthfully too)."""
    guess = rng.choice([0.2, 0.333, 0.5])
    full = rng.uniform(guess + 0.25, 0.95)
    return {
        "guess": guess,
        "full": full,
        "ceiling": full + rng.uniform(-0.005, 0.03),  # PET may stop short of full FT, or pass it
        "mid": rng.uniform(math.log10(low) + 0.3, math.log10(high) - 0.8),
        "slope": rng.uniform(1.0, 4.0),
        "noise": rng.uniform(*noise),
    }


def mean_score(cell: dict, budget: float) -> float:
    x = cell["slope"] * (math.log10(budget) - cell["mid"])
    return cell["guess"] + (cell["ceiling"] - cell["guess"]) / (1 + math.exp(-x))


def true_crossing(cell: dict, target: float, low: int, high: int) -> float:
    """The budget where the mean curve reaches `target` (0 if at `low` already, inf if never by `high`)."""
    if mean_score(cell, low) >= target:
        return 0.0
    if mean_score(cell, high) < target:
        return math.inf
    share = (target - cell["guess"]) / (cell["ceiling"] - cell["guess"])
    return 10 ** (cell["mid"] + math.log(share / (1 - share)) / cell["slope"])


def run_cell(cell: dict, rng, budgets: list[int], settings: SearchSettings, reference_seeds: int):
    full_runs = cell["full"] + cell["noise"] * rng.standard_normal(reference_seeds)
    references = {"random": cell["guess"], "full": float(full_runs.mean())}
    parsed = {name: Target.parse(name) for name in TARGETS}
    targets = {name: t.value(references) for name, t in parsed.items()}
    # a full target is the mean of the reference runs, known only to within their seed noise
    reference_runs = {name: reference_seeds for name, t in parsed.items() if t.from_runs}
    search = CellSearch(
        budgets, targets, settings, other_seeds=[list(full_runs)], reference_runs=reference_runs
    )
    rounds = 0
    while wanted := search.next_runs():
        rounds += 1
        for budget in wanted:
            search.add(budget, mean_score(cell, budget) + cell["noise"] * rng.standard_normal())
    return search, rounds


def covers(result: dict, truth: float) -> bool:
    """Whether the reported interval (ci_lo, ci_hi] holds the true crossing; a crossing at or below the
    interval's start (truth 0) is held by an interval that starts at 0."""
    return result["ci_lo"] < truth <= result["ci_hi"] or (truth == 0 and result["ci_lo"] == 0)


def simulate(
    cells: int,
    seed: int,
    low: int,
    high: int,
    resolution: float,
    settings,
    reference_seeds: int,
    noise=NOISE["seed"],
):
    """The search on `cells` simulated cells. Coverage is counted three ways: over all rows (an undecided
    row's interval, open-ended or wider than its bracket, counts where it holds the truth: it is a true
    but uninformative statement), over all rows with every undecided row counted as a miss (a lower bound),
    and over the rows whose status is "found" (a closed bracket: what a user reads as a threshold)."""
    rng = np.random.default_rng(seed)
    budgets = ladder(low, high, resolution)
    covered = strict = pairs = runs = rounds = 0
    found = found_covered = 0
    for _ in range(cells):
        cell = simulated_cell(rng, low, high, noise)
        search, cell_rounds = run_cell(cell, rng, budgets, settings, reference_seeds)
        runs += search.runs + reference_seeds
        rounds = max(rounds, cell_rounds)
        for name in TARGETS:
            truth = true_crossing(
                cell, Target.parse(name).value({"random": cell["guess"], "full": cell["full"]}), low, high
            )
            result = search.result(name)
            holds = covers(result, truth)
            pairs += 1
            covered += holds
            strict += holds and result["status"] != "undecided"
            if result["status"] == "found":
                found += 1
                found_covered += holds
    grid = cells * (len(budgets) * settings.max_seeds + reference_seeds)
    return {
        "cells": cells,
        "ladder": len(budgets),
        "noise": tuple(noise),
        "coverage": covered / pairs,
        "coverage_strict": strict / pairs,
        "found": found / pairs,
        "coverage_found": found_covered / found if found else math.nan,
        "runs_per_cell": runs / cells,
        "grid_per_cell": grid / cells,
        "runs/grid": runs / grid,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--simulate", action="store_true", required=True)
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--low", type=int, default=100)
    parser.add_argument("--high", type=int, default=1_000_000)
    parser.add_argument("--resolution", type=float, default=2.0)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--max-seeds", type=int, default=5)
    parser.add_argument("--reference-seeds", type=int, default=3)
    parser.add_argument(
        "--noise",
        nargs="+",
        choices=sorted(NOISE),
        default=["seed", "real"],
        help="seed-noise regimes, each a simulation of its own from --seed; the last line is the first's",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = SearchSettings(confidence=args.confidence, max_seeds=args.max_seeds, max_runs=10_000)
    results = [
        simulate(
            args.cells,
            args.seed,
            args.low,
            args.high,
            args.resolution,
            settings,
            args.reference_seeds,
            NOISE[regime],
        )
        for regime in args.noise
    ]
    lines = [
        f"Threshold search, simulated: {args.cells} cells per regime, ladder of {results[0]['ladder']} "
        f"budgets ({args.low}..{args.high}, factor {args.resolution}), targets {', '.join(TARGETS)}, "
        f"{args.confidence:.0%} confidence, up to {args.max_seeds} seeds per budget, "
        f"{args.reference_seeds} full-FT runs per cell, sim seed {args.seed}",
        "",
        "| noise | seed sd | coverage, all rows | coverage, undecided as misses | found | coverage of found "
        "| runs per cell | grid runs per cell | runs/grid | rounds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for regime, r in zip(args.noise, results):
        lines.append(
            f"| {regime} | {r['noise'][0]:g}..{r['noise'][1]:g} | {r['coverage']:.3f} "
            f"| {r['coverage_strict']:.3f} | {r['found']:.3f} | {r['coverage_found']:.3f} "
            f"| {r['runs_per_cell']:.1f} | {r['grid_per_cell']:.0f} | {r['runs/grid']:.3f} | {r['rounds']} |"
        )
    emit("\n".join(lines), args.out)
    print(f"coverage {results[0]['coverage']:.2f} runs/grid {results[0]['runs/grid']:.2f}")


if __name__ == "__main__":
    main()
