"""Where a score curve crosses a target: the smallest budget that reaches it, found adaptively.

The decision logic of the threshold sweeper, with no I/O: a `CellSearch` is told each run's score and
answers which budgets to run next. One cell is one (backbone, task, method, variant); its targets are
absolute scores (`Target.value` turns "random+0.05" or "full-0.01" into one).

The search walks a ladder of budgets a factor `resolution` apart between the interval's ends and assumes
the mean score rises with the budget (checked, and reported where the data say otherwise). For each
target it keeps a bracket: the largest budget decided *below* the target and the smallest decided *above*
it. A budget is decided by a one-sided t test of its seeds' mean against the target, with the seed noise
pooled over every budget of the cell (seed noise is a property of the cell, not of one budget); a target set
by reference runs (full-0.01: the mean of full fine-tuning's seeds) is an estimate too, so the test's
variance is sigma^2 (1/n + 1/m) with m those runs (`reference_runs`). A budget is decided only once it has
`min_seeds` (2) seeds: every probed budget is a decision, and one seed far in the noise's tail decided
budgets far from the crossing. The level splits the allowed error over the decisions a bisection of the
ladder makes and over `looks` (2) looks at each budget (it is tested again as seeds come: optional
stopping), Bonferroni; neither count is a worst-case bound (more budgets than a bisection's get probed, a
budget can be looked at up to max_seeds - 1 times), the simulation is what says the intervals cover:
benchmarks/threshold_search.py, >= 0.90 of all intervals and of those reported "found" at seed sd
0.005..0.03 and at 0.05..0.12 (this project's own runs), BENCHMARKS.md. A budget gets one more seed only
while its side is undecided, up to `max_seeds` (at most `seeds_per_round` at once); one still undecided then
is "ambiguous": the crossing may lie on either side of it, and the bracket keeps it inside instead of
guessing. A budget whose observed gap to the target would take more than `futility` x `max_seeds` seeds to
decide (or could not be decided by any number: the target's own error is larger than the gap) is called
ambiguous after two seeds (it sits on the crossing; more seeds there only cost runs), which widens no
interval by more than that budget.

The bracket is the interval that is reported, at the stated confidence; the point estimate is where the
isotonic (monotone) fit of the observed means crosses the target, interpolated in log budget, whatever the
bracket says (`fit` names which: "crosses", "at or below" the smallest probed budget, "not reached"): an
undecided bracket is a statement about confidence, never a reason to report infinity for means that sit
above the target. `monotone` is False where a budget's mean is significantly above a larger budget's
(pooled seed noise, the decision level): a fall within the seed noise reads monotone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from petsweep.spec.errors import ConfigError

REFERENCES = ("random", "full")


def _t_quantile(q: float, dof: int) -> float:
    """Student's t quantile; scipy is imported here, not at the top (3 s: `petsweep status` reads a search's
    state through this package)."""
    from scipy import stats

    return float(stats.t.ppf(q, dof))


@dataclass(frozen=True)
class Target:
    """A score relative to a reference: `random+0.05` (random guessing plus 0.05), `full-0.01`."""

    reference: str
    offset: float

    @classmethod
    def parse(cls, text: str, key: str = "hydra.sweeper.targets") -> Target:
        number = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?"
        match = re.fullmatch(rf"\s*([a-z]+)\s*(?:([+-])\s*({number}))?\s*", str(text))
        if not match or match.group(1) not in REFERENCES:
            raise ConfigError(
                key,
                text,
                f"a target is <reference>[+-]<offset> with reference one of {', '.join(REFERENCES)} "
                "(e.g. random+0.05, full-0.01)",
            )
        sign = -1.0 if match.group(2) == "-" else 1.0
        return cls(match.group(1), sign * float(match.group(3) or 0.0))

    @property
    def above_full(self) -> bool:
        """Above full fine-tuning's mean score: accepted (a PET method can beat full fine-tuning)."""
        return self.reference == REFERENCES[-1] and self.offset > 0

    @property
    def from_runs(self) -> bool:
        """Its reference is the mean of runs (full fine-tuning's seeds), an estimate; random guessing's is
        exact."""
        return self.reference == REFERENCES[-1]

    def value(self, references: dict[str, float]) -> float:
        return references[self.reference] + self.offset

    def __str__(self) -> str:
        return f"{self.reference}{self.offset:+g}"


def ladder(low: int, high: int, resolution: float = 2.0) -> list[int]:
    """Integer budgets from `low` to `high` (both included), consecutive ones about `resolution` apart."""
    if not (1 <= low < high) or resolution <= 1:
        raise ConfigError(
            "hydra.sweeper.budget",
            f"interval({low},{high}) at resolution {resolution}",
            "does not bracket anything; write interval(low,high) with 1 <= low < high, resolution above 1",
        )
    steps = max(1, math.ceil(math.log(high / low) / math.log(resolution) - 1e-9))
    budgets = np.unique(np.round(np.geomspace(low, high, steps + 1)).astype(int))
    return [int(b) for b in budgets]


def decision_level(settings: SearchSettings, points: int) -> float:
    """The one-sided error allowed per look at a budget: the total (1 - confidence) split over the decisions
    one target's search makes (a bisection of the ladder) and over the looks each decision may take (a
    budget is tested again each time it gets seeds: testing every look at the full level is optional
    stopping, whose error grows with the looks). Bonferroni both ways; `looks` is the simulation's choice,
    not the worst case (see SearchSettings)."""
    decisions = math.ceil(math.log2(max(points, 2)))
    return (1.0 - settings.confidence) / (decisions * settings.looks)


@dataclass(frozen=True)
class SearchSettings:
    confidence: float = 0.9
    max_seeds: int = 3  # seeds at one budget before it is called ambiguous
    max_runs: int = 40  # runs of one cell, all targets together
    # a budget with 2+ seeds whose observed gap to the target would need more than futility x max_seeds
    # seeds to decide is called ambiguous early (it sits on the crossing; more seeds there are wasted)
    futility: float = 3.0
    seeds_per_round: int = 2  # seeds one budget gets in one round (a noisy first gap asks for too many)
    # seeds a budget has before it can be decided: one seed far out in the noise's tail decided budgets far
    # from the crossing (the simulation at seed sd 0.05..0.12), and every probed budget is a decision
    min_seeds: int = 2
    # looks at one budget the decision level is split over: a budget is looked at after 2 seeds, then after
    # each round's 1-2 more (at most max_seeds - 1 looks); 2, not that worst case, is what the simulation
    # needs for its intervals to cover at both noise regimes (benchmarks/threshold_search.py)
    looks: int = 2


BELOW, ABOVE, OPEN, AMBIGUOUS = "below", "above", "open", "ambiguous"


@dataclass
class CellSearch:
    """The search of one cell: budgets on a ladder, scores as they come, the next budgets to run."""

    budgets: list[int]
    targets: dict[str, float]  # name -> absolute score
    settings: SearchSettings = field(default_factory=SearchSettings)
    scores: dict[int, list[float]] = field(default_factory=dict)
    # other seed groups of the cell (its full fine-tuning runs) whose spread counts toward the seed noise
    other_seeds: list[list[float]] = field(default_factory=list)
    # target name -> how many runs its reference score is the mean of (full fine-tuning's seeds): such a
    # target is itself estimated, with the cell's seed noise; a target not named here is exact (random guess)
    reference_runs: dict[str, int] = field(default_factory=dict)

    def add(self, budget: int, score: float) -> None:
        self.scores.setdefault(int(budget), []).append(float(score))

    @property
    def runs(self) -> int:
        return sum(len(v) for v in self.scores.values())

    def noise(self) -> tuple[float, int]:
        """The pooled seed standard deviation of the cell and its degrees of freedom (0: not known yet)."""
        groups = [np.asarray(v) for v in [*self.scores.values(), *self.other_seeds] if len(v) > 1]
        dof = sum(len(g) - 1 for g in groups)
        if not dof:
            return math.nan, 0
        return math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups) / dof), dof

    def reference_runs_of(self, target: float) -> int:
        """How many runs the reference score of `target` is the mean of (0: the target is exact)."""
        return max((self.reference_runs.get(n, 0) for n, v in self.targets.items() if v == target), default=0)

    def _critical(self, dof: int) -> float:
        return _t_quantile(1 - decision_level(self.settings, len(self.budgets)), dof)

    def _seeds_needed(self, gap: float, sigma: float, critical: float, target: float) -> float:
        """Seeds at one budget for a mean `gap` from `target` to be decided: the n where critical x the
        standard error of (mean - target) equals the gap, infinity where no n does (the target's own
        error, from its reference runs, is larger than the gap allows)."""
        if not gap:
            return math.inf
        room = (gap / (critical * sigma)) ** 2 - self._reference_share(target)
        return 1 / room if room > 0 else math.inf

    def _reference_share(self, target: float) -> float:
        m = self.reference_runs_of(target)
        return 1 / m if m else 0.0

    def side(self, budget: int, target: float) -> str:
        """Whether the mean score at `budget` is decided below or above `target`, or not yet: a one-sided
        t test of the gap, whose variance is the seed noise's over this budget's seeds plus, for a target
        set by reference runs (full fine-tuning's), over those runs (sigma^2 (1/n + 1/m): the target is an
        estimate too)."""
        seen = self.scores.get(budget, [])
        sigma, dof = self.noise()
        if not seen or not dof:
            return OPEN
        if sigma == 0:
            return ABOVE if np.mean(seen) >= target else BELOW
        if len(seen) < min(self.settings.min_seeds, self.settings.max_seeds):
            return OPEN
        spread = sigma * math.sqrt(1 / len(seen) + self._reference_share(target))
        t = (np.mean(seen) - target) / spread
        critical = self._critical(dof)
        if t >= critical:
            return ABOVE
        if t <= -critical:
            return BELOW
        if len(seen) >= self.settings.max_seeds:
            return AMBIGUOUS
        # futility: at the gap seen so far, deciding would take far more seeds than the budget may have
        needed = self._seeds_needed(abs(np.mean(seen) - target), sigma, critical, target)
        if len(seen) >= 2 and needed > self.settings.futility * self.settings.max_seeds:
            return AMBIGUOUS
        return OPEN

    def bracket(self, target: float) -> tuple[int, int]:
        """Ladder indices (a, b): a the largest decided below under b, the smallest decided above; -1 and
        len(budgets) stand for "below the interval" and "beyond it"."""
        sides = [self.side(b, target) for b in self.budgets]
        above = [i for i, s in enumerate(sides) if s == ABOVE]
        b = min(above) if above else len(self.budgets)
        below = [i for i, s in enumerate(sides) if s == BELOW and i < b]
        return (max(below) if below else -1), b

    def monotone(self, target: float | None = None) -> bool:
        """False where the mean at some budget is significantly above the mean at a larger budget: a
        one-sided two-sample t test with the cell's pooled seed noise at the decision level
        (`decision_level`), the same tolerance a budget's side is decided with. A fall within the seed
        noise is not flagged (nor anything before the noise is known); with zero noise any fall is.
        `target` is not used (kept for callers): whether the curve rises does not depend on it."""
        sigma, dof = self.noise()
        probed = sorted(self.scores)
        if not dof or len(probed) < 2:
            return True
        means = {k: float(np.mean(self.scores[k])) for k in probed}
        critical = self._critical(dof)
        for i, low in enumerate(probed):
            for high in probed[i + 1 :]:
                fall = means[low] - means[high]
                spread = sigma * math.sqrt(1 / len(self.scores[low]) + 1 / len(self.scores[high]))
                if fall > 0 and fall >= critical * spread:
                    return False
        return True

    def _next_for(self, target: float) -> int | None:
        """The budget one target wants a run of next, or None when its search is done."""
        a, b = self.bracket(target)
        inside = [i for i in range(a + 1, b) if self.side(self.budgets[i], target) != AMBIGUOUS]
        if b - a <= 1 or not inside:
            return None
        for i in inside:  # a budget already started is decided first
            if self.budgets[i] in self.scores and self.side(self.budgets[i], target) == OPEN:
                return self.budgets[i]
        aim = self._aim(target, a, b)
        return self.budgets[min(inside, key=lambda i: (abs(i - aim), i))]

    def _aim(self, target: float, a: int, b: int) -> float:
        """The ladder position to probe inside (a, b): where the line between the bracket's observed means
        crosses the target (score curves are smooth in log budget), kept in the bracket's middle half so
        that a poor guess still halves the bracket; its middle where an end has no scores yet."""
        middle = (a + b) / 2
        if a < 0 or b >= len(self.budgets):
            return middle
        lo, hi = np.mean(self.scores[self.budgets[a]]), np.mean(self.scores[self.budgets[b]])
        if hi <= lo:
            return middle
        guess = a + (target - lo) / (hi - lo) * (b - a)
        return float(np.clip(guess, a + (b - a) / 4, b - (b - a) / 4))

    def seeds_wanted(self, budget: int, target: float) -> int:
        """How many more seeds `budget` needs, as far as its scores so far tell, to be decided against
        `target` (at least one, never past `max_seeds`): asked for in one round, so a cluster runs them
        side by side instead of one round per seed."""
        seen = self.scores.get(budget, [])
        sigma, dof = self.noise()
        first = min(self.settings.min_seeds, self.settings.max_seeds)
        if not seen:  # without a noise estimate yet, the first budget takes two seeds
            return max(first, 1 if dof else 2)
        room = self.settings.max_seeds - len(seen)
        if len(seen) < first:
            return first - len(seen)
        gap = abs(np.mean(seen) - target)
        if not dof or gap == 0:
            return max(1, room)
        needed = self._seeds_needed(gap, sigma, self._critical(dof), target)
        more = math.ceil(needed) - len(seen) if math.isfinite(needed) else room
        return int(min(max(more, 1), room, self.settings.seeds_per_round))

    def next_runs(self) -> list[int]:
        """The budgets of the next round's runs (a budget once per seed it gets), all targets together;
        empty when every target is settled or the cell has used `max_runs`."""
        wanted: dict[int, int] = {}
        for target in self.targets.values():
            budget = self._next_for(target)
            if budget is not None:
                wanted[budget] = max(wanted.get(budget, 0), self.seeds_wanted(budget, target))
        runs = [budget for budget, count in sorted(wanted.items()) for _ in range(count)]
        return runs[: max(0, self.settings.max_runs - self.runs)]

    def fit(self) -> tuple[list[int], np.ndarray]:
        """The probed budgets and the isotonic (non-decreasing) fit of their mean scores, seeds as weights."""
        probed = sorted(self.scores)
        means = [float(np.mean(self.scores[k])) for k in probed]
        return probed, isotonic(means, [len(self.scores[k]) for k in probed]) if probed else np.array([])

    def crossing(self, target: float) -> tuple[float, str]:
        """Where the isotonic fit of the means crosses `target`, interpolated in log budget, and what that
        is: "crosses" (between two probed budgets), "at or below" (the fit is at or above the target at the
        smallest probed budget already: the crossing lies at or below it, which is returned), "not reached"
        (below it at every probed budget: infinity), "no runs". The bracket is not consulted: the estimate
        follows the data, the bracket says how sure the data are."""
        probed, fit = self.fit()
        if not probed:
            return math.inf, "no runs"
        if fit[0] >= target:
            return float(probed[0]), "at or below"
        x = np.log([float(k) for k in probed])
        for i in range(1, len(probed)):
            if fit[i - 1] < target <= fit[i]:
                at = x[i - 1] + (target - fit[i - 1]) / (fit[i] - fit[i - 1]) * (x[i] - x[i - 1])
                return float(math.exp(at)), "crosses"
        return math.inf, "not reached"

    def estimate(self, target: float) -> float:
        """Where the isotonic fit of the means in log budget crosses `target` (`crossing`): the smallest
        probed budget where the fit is above the target there already, infinity where it never reaches it."""
        return self.crossing(target)[0]

    def result(self, name: str) -> dict:
        target = self.targets[name]
        a, b = self.bracket(target)
        n = len(self.budgets)
        estimate, fit = self.crossing(target)
        status = "found"
        if b >= n:
            status = "not reached" if a == n - 1 else "undecided"
        elif a < 0:
            status = "at or below the interval" if b == 0 else "undecided"
        elif b - a > 1:
            ambiguous = all(self.side(self.budgets[i], target) == AMBIGUOUS for i in range(a + 1, b))
            status = "found" if ambiguous else "undecided"
        return {
            "target": name,
            "target_score": target,
            "estimate": estimate,
            "fit": fit,
            "ci_lo": float(self.budgets[a]) if a >= 0 else 0.0,
            "ci_hi": float(self.budgets[b]) if b < n else math.inf,
            "confidence": self.settings.confidence,
            "runs": self.runs,
            "monotone": self.monotone(target),
            "status": status,
        }


def isotonic(means: list[float], weights: list[float]) -> np.ndarray:
    """The non-decreasing sequence closest to `means` in weighted least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, size]
    for m, w in zip(means, weights):
        blocks.append([m, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, s2 = blocks.pop()
            m1, w1, s1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, s1 + s2])
    return np.concatenate([[m] * s for m, _, s in blocks])
