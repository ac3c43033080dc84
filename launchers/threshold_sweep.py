"""hydra/sweeper=threshold: the rounds of a threshold search over cells; the records on disk are the truth.

A cell is one combination of the non-budget axes of the command line (backbone x task x method x ...). Each
round, every cell's search (launchers.threshold_search.CellSearch) is rebuilt from the run records on disk,
asks for its next probes, and all cells' probes (and the full fine-tuning runs a `full` target needs as its
reference) are launched at once through the configured launcher. A probe is a normal run with the budget key
set to a ladder budget and the seed key set to 0, 1, ...: a re-run of the same command finds every finished
probe (and any grid run of the same config) and trains none twice. After each round the search state is
written to <sweep dir>/search_state.json (`petsweep status` shows it), at the end the thresholds table to
thresholds_search.csv / .json and a figure of threshold vs backbone size to thresholds_search.png.

Targets use analysis.thresholds' definitions: the score is the test score of the best dev checkpoint
(result.json `score`), `random` is the task's random-guess score (`random_guess_score`), `full` the mean
score of full fine-tuning of the same backbone and task (the reference method's defaults, seeds 0..n-1, or
the seeds `reference_seeds` lists: a grid's full fine-tuning runs are then found, not trained again).
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from launchers.expand import axes_of, expand
from launchers.planning import CachedComposer, PlannedRun, plan
from launchers.sweep import SWEEP_MARKER, record_sweep, unfinished
from launchers.threshold_search import CellSearch, SearchSettings, Target, ladder
from petsweep.model.resolve import run_dir
from petsweep.records.record import notes
from petsweep.records.status import RunDir
from petsweep.records.status import write_json as write_status_json
from petsweep.spec.errors import ConfigError

STATE_FILE = "search_state.json"
# the keys a budget is a parameter count under: the matched-budget key (every method the solver sizes) and
# APET's own scale; any other key (method.lr) would search something that is not a budget
BUDGET_KEYS = ("budget", "apet.scale")
TABLE_NAME = "thresholds_search"


@dataclass
class ThresholdSettings:
    budget: str = "interval(100,1000000)"
    targets: list[str] = field(default_factory=lambda: ["random+0.05", "full-0.01"])
    resolution: float = 2.0
    max_runs: int = 40  # probes of one cell, all targets together
    confidence: float = 0.9
    max_seeds: int = 5
    budget_key: str | None = None  # null: `budget` where the composed config has it, else apet.scale
    seed_key: str = "seed"
    reference_method: str = "full"
    reference_seeds: int | list[int] = 3  # n: seeds 0..n-1; or the seeds themselves (a grid's: [1,2,3])
    max_rounds: int = 50


def reference_seeds(value) -> list[int]:
    """`hydra.sweeper.reference_seeds`: a count n (seeds 0..n-1) or a list of distinct seeds."""
    seeds = list(range(value)) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(seeds, list | tuple) or not seeds or len(set(seeds)) != len(seeds):
        seeds = None
    elif not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        seeds = None
    if seeds is None:
        raise ConfigError(
            "hydra.sweeper.reference_seeds",
            value,
            "give a count n >= 1 (seeds 0..n-1) or a list of distinct seeds >= 0, e.g. [1,2,3]",
        )
    return [int(s) for s in seeds]


def check_settings(settings: ThresholdSettings) -> None:
    """The sweeper's numeric settings, each refused in one line naming its key and the valid range."""
    checks = [
        ("resolution", settings.resolution, lambda v: v > 1, "must be above 1: the factor between budgets"),
        ("max_runs", settings.max_runs, lambda v: v >= 1, "must be at least 1: the probes of one cell"),
        ("max_seeds", settings.max_seeds, lambda v: v >= 1, "must be at least 1: the seeds of one budget"),
        ("confidence", settings.confidence, lambda v: 0 < v < 1, "must be between 0 and 1, e.g. 0.9"),
        ("max_rounds", settings.max_rounds, lambda v: v >= 1, "must be at least 1"),
    ]
    for key, value, ok, expected in checks:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not ok(value):
            raise ConfigError(f"hydra.sweeper.{key}", _AsTyped(value), expected)


def parse_interval(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*interval\(\s*([0-9.e+]+)\s*,\s*([0-9.e+]+)\s*\)\s*", str(text))
    try:
        ends = [float(match.group(i)) for i in (1, 2)] if match else [0.0, 0.0]
    except ValueError:
        ends = [0.0, 0.0]
    low, high = (int(end) if end == int(end) else 0 for end in ends)  # 100.7 is refused, not cut to 100
    if not match or not 1 <= low < high:
        raise ConfigError(
            "hydra.sweeper.budget",
            text,
            "write interval(low,high) with integers 1 <= low < high, e.g. interval(100,1000000)",
        )
    return low, high


class _AsTyped(str):
    """A command-line value shown as typed in an error line (budget=500, not budget='500')."""

    def __repr__(self) -> str:
        return str(self)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _sized_by_apet_scale(method) -> bool:
    """Whether method `method` takes its budget from apet.scale (PETMethod.budget_strategy "apet_scale", the
    hook validation checks the `apet` group by: model.resolve.check_apet_group)."""
    from petsweep.methods import METHODS

    return method in METHODS.names() and METHODS.get(method).budget_strategy == "apet_scale"


@dataclass
class Cell:
    overrides: list[str]
    name: str
    search: CellSearch | None = None  # None until the targets' references are known
    pending_search: CellSearch | None = None  # the search on the records, with placeholder targets if need be
    probes: dict[int, dict[int, Path]] = field(default_factory=dict)  # budget -> seed -> run dir
    references: dict[int, Path] = field(default_factory=dict)  # seed -> run dir of the reference run
    random_guess: float | None = None
    backbone_params: int | None = None
    note: str = ""
    head_params: int | None = None  # the task head's trainable parameters, from the cell's probes
    budgets: list[int] = field(default_factory=list)  # the ladder's budgets the cell's method can take
    # requested budget -> (pet_params, trainable_params) its runs' records say: the solver sizes a method to
    # the nearest count it can take, so for every method but APET the run's count differs from the request
    counts: dict[int, tuple[int, int]] = field(default_factory=dict)
    # requested budget -> its probes whose record says the PET parameters did not move (records.record.STILL):
    # their score is the head's alone, and a threshold resting on them is the head's (#24 review F8)
    unmoved: dict[int, int] = field(default_factory=dict)


class ThresholdSearch:
    def __init__(
        self,
        arguments: list[str],
        settings: ThresholdSettings,
        compose_fn: Callable,
        launch_fn: Callable[[list[PlannedRun]], list[int]],
        log=print,
        loader=None,
    ):
        """`loader`: what lists a config group's options for the glob() axes (launchers.expand.parse)."""
        self.settings, self.compose_fn, self.launch_fn, self.log = settings, compose_fn, launch_fn, log
        self.arguments = list(arguments)
        check_settings(settings)
        self.reference_seeds = reference_seeds(settings.reference_seeds)
        from petsweep.methods import METHODS

        if settings.reference_method not in METHODS.names():  # Hydra's own error dump, before
            raise ConfigError(
                "hydra.sweeper.reference_method",
                settings.reference_method,
                f"a full target's reference has no such method; choose one of: {', '.join(METHODS.names())}",
            )
        parsed = [Target.parse(t) for t in settings.targets]
        self.targets = {str(text): t for text, t in zip(settings.targets, parsed)}  # named as the user wrote
        if len(set(parsed)) < len(parsed):  # merged silently before (#24 review round 2, G4)
            twice = sorted({str(t) for t in parsed if parsed.count(t) > 1})
            raise ConfigError(
                "hydra.sweeper.targets",
                _AsTyped(f"[{','.join(map(str, settings.targets))}]"),
                f"names {', '.join(twice)} more than once; give each target once",
            )
        if not self.targets:
            raise ConfigError("hydra.sweeper.targets", "[]", "name at least one target, e.g. [random+0.05]")
        above = [name for name, t in self.targets.items() if t.above_full]
        if above:  # accepted: a PET method can beat full fine-tuning; one that never does says so at the end
            self.log(
                f"note: target {', '.join(above)} lies above full fine-tuning's mean score; a cell no probe "
                "reaches ends 'not reached up to the interval's top'"
            )
        if settings.budget_key not in (None, *BUDGET_KEYS):  # budget_key=method.lr searched learning rates
            raise ConfigError(
                "hydra.sweeper.budget_key",
                settings.budget_key,
                f"is not a parameter-count key; choose one of: {', '.join(BUDGET_KEYS)} (or leave it null)",
            )
        low, high = parse_interval(settings.budget)
        self.budgets = ladder(low, high, settings.resolution)
        self.search_settings = SearchSettings(settings.confidence, settings.max_seeds, settings.max_runs)
        self.composer = CachedComposer(compose_fn)
        self.known: dict[Path, list[str]] = {}  # run dir -> overrides, of every run the search has or plans
        varying = set(axes_given(self.arguments, loader))
        self.cells = [
            Cell(o, " ".join(v for v in o if _key(v) in varying) or _short(o))
            for o in expand(arguments, loader=loader)
        ]
        first = self.composer(self.cells[0].overrides)
        self.budget_key = settings.budget_key or ("budget" if "budget" in first else "apet.scale")
        given = {_key(o): o.split("=", 1)[-1] for o in self.arguments}
        for key, what in ((self.budget_key, "budget"), (settings.seed_key, "seed")):
            if key in given:
                raise ConfigError(
                    key, _AsTyped(given[key]), f"the threshold sweeper sets the {what} itself; drop it"
                )
        for cell in self.cells:
            self._check_cell(cell)
        self._cell_ladders()
        for cell in self.cells:
            self._check_reference(cell)
        self.sweep_dir = run_dir(first).parent
        self.trained: list[str] = []
        state = self.sweep_dir / STATE_FILE  # rounds of earlier invocations of the same search
        self.rounds_before = json.loads(state.read_text()).get("round", 0) if state.exists() else 0

    def _check_cell(self, cell: Cell) -> None:
        cfg = self.composer(cell.overrides)
        method = _get(cfg, "method.name")
        if self.budget_key == "apet.scale" and not _sized_by_apet_scale(method):
            raise ConfigError(
                "method",
                method,
                "has no budget knob the threshold sweeper can set (hydra.sweeper.budget_key=apet.scale: "
                "method=apet), or name the key with hydra.sweeper.budget_key",
            )
        if self.budget_key == "budget":
            from petsweep.model.budget import KNOBS

            if method not in KNOBS:  # budget=K would only accept the method's own count, never size it
                raise ConfigError(
                    "method",
                    method,
                    f"has no budget knob the threshold sweeper can set; methods with one: {', '.join(KNOBS)}",
                )
        parent, _, leaf = self.budget_key.rpartition(".")  # `budget` is in every config, null by default
        if leaf not in ((_get(cfg, parent) or {}) if parent else cfg) and self.budget_key != "apet.scale":
            raise ConfigError(
                "hydra.sweeper.budget_key", self.budget_key, "is not a key of the composed config"
            )
        parent, _, leaf = self.settings.seed_key.rpartition(".")  # Hydra's multi-line dump, before
        if leaf not in ((_get(cfg, parent) or {}) if parent else cfg):
            raise ConfigError(
                "hydra.sweeper.seed_key", self.settings.seed_key, "is not a key of the composed config"
            )
        if self._wants_full() and method == self.settings.reference_method:
            raise ConfigError(
                "hydra.sweeper.targets",
                ",".join(self.targets),
                f"a full target needs {self.settings.reference_method} fine-tuning as its reference; "
                f"the cell's method is {method} itself",
            )

    def _wants_full(self) -> bool:
        return any(t.reference == "full" for t in self.targets.values())

    def _check_reference(self, cell: Cell) -> None:
        """A full target's reference must be a run the backbone can take: fails in one line here. After the
        cells' own checks (_cell_ladders), so that an error of the cell itself is named as the cell's."""
        if not self._wants_full():
            return
        try:
            plan([self._reference_overrides(cell, self.reference_seeds[0])], self.compose_fn)
        except ConfigError as err:
            raise ConfigError(
                "hydra.sweeper.targets",
                ",".join(self.targets),
                f"target full has no reference: {self.settings.reference_method} fine-tuning of "
                f"this cell cannot run ({err.key}={err.value}: {err.expected})",
            ) from None

    def _cell_ladders(self) -> None:
        """Each cell's own ladder: the interval's budgets its method can take, before anything runs (a probe
        the bisection reached late, LoRA at budget=100 on a model whose rank 1 counts 1,536, stopped the
        search in the middle). A cell's unreachable budgets are left out of its ladder, named in one note
        line; a cell left with no budget is refused, one line per such cell. Each (cell, budget) is resolved
        as its run would be (the solver, whose counts are cached per knob value), not planned: no second
        meta-device attach per budget, no run hash, no status read (#24 review F2: 37-119 s at start)."""
        from petsweep.model.params import check_on_meta
        from petsweep.model.resolve import resolve_run
        from petsweep.spec.errors import ConfigErrors

        empty: list[ConfigError] = []
        for cell in self.cells:
            refused: dict[int, ConfigError] = {}
            cell.budgets = []
            for budget in self.budgets:
                try:
                    spec = resolve_run(copy.deepcopy(self.composer(self._probe_overrides(cell, budget, 0))))
                    if spec.budget is None:  # APET's apet.scale: the attach is the check
                        check_on_meta(spec)
                    # no id here: an id asks every other budget_rule, a solve each, for probes most of
                    # which never run (the plan of a probe that runs computes its id from its own spec)
                except ConfigError as err:
                    if err.key not in ("budget", "apet.scale", self.budget_key):
                        expected = f"{err.expected} (in cell: {cell.name})"
                        raise ConfigError(err.key, err.value, expected) from None
                    refused[budget] = err
                    continue
                cell.budgets.append(budget)
            if not cell.budgets:
                first = refused[self.budgets[0]]
                empty.append(
                    ConfigError(
                        "hydra.sweeper.budget",
                        self.settings.budget,
                        f"no budget of it is in reach of cell {cell.name} "
                        f"({first.key}={first.value}: {first.expected})",
                    )
                )
            elif refused:
                self.log(
                    f"note: {cell.name}: budgets {', '.join(map(str, refused))} of "
                    f"hydra.sweeper.budget={self.settings.budget} are out of its method's reach and left out "
                    f"of its ladder ({len(cell.budgets)} budgets, {cell.budgets[0]}..{cell.budgets[-1]})"
                )
        if len(empty) == 1:
            raise empty[0]
        if empty:
            raise ConfigErrors(
                empty,
                f"{len(empty)} cells reach no budget of hydra.sweeper.budget={self.settings.budget}; give "
                "an interval their methods reach (`petsweep plan` with budget=<the interval's ends> shows "
                "it), or search those cells apart",
            )

    # ---- overrides and records

    def _probe_overrides(self, cell: Cell, budget: int, seed: int) -> list[str]:
        return [*cell.overrides, f"{self.budget_key}={budget}", f"{self.settings.seed_key}={seed}"]

    def _reference_overrides(self, cell: Cell, seed: int) -> list[str]:
        kept = [
            o
            for o in cell.overrides
            if not _key(o).startswith(("method", "apet")) and _key(o) not in (self.budget_key, "seed")
        ]
        return [*kept, f"method={self.settings.reference_method}", f"seed={seed}"]

    def _path(self, overrides: list[str]) -> Path:
        return run_dir(self.composer(overrides))

    @staticmethod
    def _record(path: Path) -> dict | None:
        return RunDir(path).result() if (path / "result.json").exists() else None

    def _read(self, cell: Cell) -> None:
        """Rebuild the cell's search from the records on disk."""
        scores: dict[int, list[float]] = {}
        ref_scores: list[float] = []
        cell.probes, cell.references, cell.counts, cell.unmoved = {}, {}, {}, {}
        for budget in cell.budgets:
            for seed in range(self.settings.max_seeds):
                path = self._path(self._probe_overrides(cell, budget, seed))
                cell.probes.setdefault(budget, {})[seed] = path
                record = self._record(path)
                if record is not None:
                    self.known[path] = self._probe_overrides(cell, budget, seed)
                    scores.setdefault(budget, []).append(float(record["score"]))
                    counts = int(record["pet_params"]), int(record["trainable_params"])
                    cell.counts.setdefault(budget, counts)
                    if notes(record):  # PET parameters did not move
                        cell.unmoved[budget] = cell.unmoved.get(budget, 0) + 1
                    cell.random_guess = float(record["random_guess_score"])
                    cell.backbone_params = int(record["total_params"])
                    if record.get("head_params") is not None:
                        cell.head_params = int(record["head_params"])
        if any(t.reference == "full" for t in self.targets.values()):
            for seed in self.reference_seeds:
                path = self._path(self._reference_overrides(cell, seed))
                cell.references[seed] = path
                record = self._record(path)
                if record is not None:
                    self.known[path] = self._reference_overrides(cell, seed)
                    ref_scores.append(float(record["score"]))
                    cell.random_guess = float(record["random_guess_score"])
                    cell.backbone_params = int(record["total_params"])
        full = sum(ref_scores) / len(ref_scores) if ref_scores else None
        known = {"random": cell.random_guess, "full": full}
        ready = all(known[t.reference] is not None for t in self.targets.values()) and len(ref_scores) == len(
            cell.references
        )
        if ready:
            values = {name: t.value(known) for name, t in self.targets.items()}
            others = [ref_scores] if ref_scores else []
        else:  # the first probes do not depend on the targets' values: the ladder's middle, two seeds
            values, others = {name: 0.0 for name in self.targets}, []
        runs_behind = {name: len(ref_scores) for name, t in self.targets.items() if t.from_runs and ready}
        search = CellSearch(
            cell.budgets, values, self.search_settings, other_seeds=others, reference_runs=runs_behind
        )
        for budget, values_at in scores.items():
            for score in values_at:
                search.add(budget, score)
        cell.search = search if ready else None
        cell.pending_search = search

    def _wanted(self, cell: Cell) -> list[list[str]]:
        runs = [self._reference_overrides(cell, s) for s, p in cell.references.items() if not self._record(p)]
        if cell.search is None and cell.pending_search.runs:
            return runs  # probes exist: wait for the references before deciding anything
        used: dict[int, int] = {}
        for budget in cell.pending_search.next_runs():
            free = [s for s, p in sorted(cell.probes[budget].items()) if self._record(p) is None]
            if used.get(budget, 0) < len(free):
                runs.append(self._probe_overrides(cell, budget, free[used.get(budget, 0)]))
                used[budget] = used.get(budget, 0) + 1
        return runs

    # ---- the rounds

    def run(self) -> bool:
        """Rounds until no cell wants a run; True when every launched run finished."""
        failed: set[str] = set()
        for round_ in range(1, self.settings.max_rounds + 1):
            wanted = []
            for cell in self.cells:
                self._read(cell)
                wanted += [o for o in self._wanted(cell) if str(self._path(o)) not in failed]
            self.write_state(self.rounds_before + round_ - (not wanted), done=not wanted)
            if not wanted:
                break
            runs = plan(wanted, self.compose_fn)
            record_sweep(runs, self.arguments)
            self.known.update((r.path, r.overrides) for r in runs)
            self.label_every_run()
            todo = unfinished(runs)
            self.log(
                f"petsweep threshold search {self.sweep_dir}: round {round_}, {len(runs)} runs "
                f"({len(runs) - len(todo)} on disk), launching {len(todo)}"
            )
            if todo:
                self.launch_fn(todo)
                self.trained += [r.path.name for r in todo if self._record(r.path) is not None]
            lost = [r for r in runs if self._record(r.path) is None]
            for r in lost:
                failed.add(str(r.path))
                self.log(f"  no result: {r.path.name}  (the search goes on without it)")
        table = self.write_table()
        self.log(f"petsweep threshold search {self.sweep_dir}: {len(self.trained)} runs trained")
        if table:  # the unit: the runs' own counts; `petsweep thresholds` counts trainable parameters
            self.log(
                f"  counts in {table[0]['budget_unit']}; the requested {self.budget_key}= values in the "
                "*_budget columns; smallest_probed_trainable is `petsweep thresholds`' unit"
            )
        for row in table:
            self.log(
                f"  {row['cell']}  {row['target']}: {status_text(row['status'], row['top'])}, "
                f"estimate {row['estimate']:.4g}"
                + ("" if row["fit"] == "crosses" else f" ({row['fit']})")
                + f", interval ({row['ci_lo']:.4g}, {row['ci_hi']:.4g}], {row['runs']} runs"
                + ("" if row["monotone"] else ", NOT MONOTONE")
                + f"; stopped: {row['stopped']}"
                + unmoved_text(row)
                + (f"; note: {row['note']}" if row["note"] else "")
            )
        return not failed

    def _stopped(self, cell: Cell, name: str, status: str) -> str:
        """Why a cell's search of one target ended (#24 review F8: an undecided row never said). A bracket
        between neighbours of the cell's ladder is at the resolution only where the method takes the
        interval's budgets between them: one across budgets left out of its ladder is a ladder gap (round 2,
        G1: selective_module's [720, 138950] read "resolution reached")."""
        search = cell.search
        target = search.targets[name]
        a, b = search.bracket(target)
        if status == "found":
            hole = self._gap(cell, cell.budgets[a], cell.budgets[b])
            if b - a <= 1:
                return hole or "resolution reached"
            ambiguous = "the budgets between are ambiguous (max_seeds)"
            return f"{ambiguous}, and a {hole}" if hole else ambiguous
        if status in ("not reached", "at or below the interval"):
            return "decided at the interval's end"
        if search.runs >= self.settings.max_runs:
            return f"max_runs={self.settings.max_runs} used up"
        if search._next_for(target) is not None:
            return f"max_rounds={self.settings.max_rounds} reached, or a probe failed"
        return "the budgets left are ambiguous (max_seeds)"

    def _gap(self, cell: Cell, low: float, high: float) -> str:
        """'' where the cell's method takes the interval's ladder budgets between `low` and `high` (requested
        budgets), else what the hole is: its consecutive budgets there skip some the method cannot take, so
        they lie more than `resolution` apart, and nothing can be measured in between."""
        if not (0 < low < high and math.isfinite(high)):
            return ""
        kept = [k for k in cell.budgets if low <= k <= high]
        holes = [
            (x, y) for x, y in zip(kept, kept[1:]) if any(x < k < y and k not in kept for k in self.budgets)
        ]
        if not holes:
            return ""
        method = _get(self.composer(cell.overrides), "method.name")
        x, y = max(holes, key=lambda h: h[1] / h[0])
        return (
            f"ladder gap: {method} takes none of the interval's budgets between {x} and {y} (a factor "
            f"{y / x:.3g}, resolution {self.settings.resolution:g})"
        )

    def label_every_run(self) -> None:
        """Write sweep.json's labels (what differs: sweep lines, `petsweep status`, W&B names) over every run
        of the search, those of earlier rounds and invocations found on disk too, before a round launches.
        record_sweep labels one round's runs among themselves: a round of one probe per cell read
        [backbone=tiny-bert], without the budget and seed that tell it from the cell's other probes."""
        from petsweep.records.labels import differing

        marker = self.sweep_dir / SWEEP_MARKER
        data = json.loads(marker.read_text())
        paths = list(self.known)
        shown = differing([self.known[path] for path in paths])
        data["labels"] = {**(data.get("labels") or {}), **{p.name: label for p, label in zip(paths, shown)}}
        write_status_json(marker, data)

    def rows(self) -> list[dict]:
        rows = []
        for cell in self.cells:
            for name in self.targets:
                row = {"cell": cell.name, "target": name, "backbone_params": cell.backbone_params}
                if cell.search is None:
                    rows.append({**row, "status": "waiting for references", "runs": cell.pending_search.runs})
                    continue
                result = cell.search.result(name)
                a, b = cell.search.bracket(result["target_score"])
                row.update(result)
                row["target"] = name
                row["bracket_budget"] = [
                    cell.budgets[a] if a >= 0 else None,
                    cell.budgets[b] if b < len(cell.budgets) else None,
                ]
                row["bracket"] = [achieved(cell.counts, k) for k in row["bracket_budget"]]
                row["top"] = cell.budgets[-1]
                row["ladder"] = cell.budgets  # the cell's own (#24 round 2, G6): its method's reach
                row["stopped"] = self._stopped(cell, name, result["status"])
                if "ladder gap" in row["stopped"]:  # the bracket is wider than the resolution
                    row["status"] = "found (ladder gap)"
                columns = budget_columns(cell.search, result, self.budget_key, cell.head_params, cell.counts)
                row.update(columns)
                row["note"] = "; ".join(filter(None, [estimate_note(row), self._estimate_gap(cell, row)]))
                row["unmoved_probes"] = unmoved_probes(cell.search, row, cell.unmoved)
                row["scores"] = {str(k): v for k, v in sorted(cell.search.scores.items())}
                rows.append(row)
        return rows

    def _estimate_gap(self, cell: Cell, row: dict) -> str:
        """A note where the estimate is interpolated across a ladder gap: the fit's crossing lies between two
        budgets of the cell's ladder the method takes nothing between, so it is a point inside a hole, not
        a measurement; the bracket is what the data say (#24 round 2, G1)."""
        estimate = row["estimate_budget"]
        if row["fit"] != "crosses" or not math.isfinite(estimate):
            return ""
        low = max([k for k in cell.budgets if k <= estimate], default=0)
        high = min([k for k in cell.budgets if k >= estimate], default=math.inf)
        hole = self._gap(cell, low, high)
        return f"the estimate is interpolated across a {hole}; read the bracket" if hole else ""

    def write_state(self, round_: int, done: bool) -> None:
        state = {
            "updated": time.time(),
            "round": round_,  # rounds that launched runs, over every invocation of the search
            "done": done,
            "budget_key": self.budget_key,
            "ladder": self.budgets,
            "settings": asdict(self.settings),
            "rows": self.rows(),
        }
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        write_status_json(self.sweep_dir / STATE_FILE, _finite(state))

    def write_table(self) -> list[dict]:
        import pandas as pd

        rows = [r for r in self.rows() if "estimate" in r]
        columns = [
            "cell", "target", "target_score", "estimate", "fit", "bracket", "ci_lo", "ci_hi", "confidence",
            "runs", "monotone", "status", "stopped", "smallest_probed", "budget_unit", "head_params",
            "smallest_probed_trainable", "backbone_params", "estimate_budget", "bracket_budget",
            "ci_lo_budget", "ci_hi_budget", "smallest_probed_budget", "note", "unmoved_probes",
        ]  # fmt: skip
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("bracket", "bracket_budget"):
            frame[column] = [f"{lo or '-'}..{hi or 'beyond'}" for lo, hi in frame[column]]
        frame.to_csv(self.sweep_dir / f"{TABLE_NAME}.csv", index=False)
        (self.sweep_dir / f"{TABLE_NAME}.json").write_text(json.dumps(_finite(rows), indent=2))
        if rows:
            from analysis.threshold_figure import threshold_figure

            threshold_figure(frame, self.sweep_dir / f"{TABLE_NAME}.png")
        return rows


def achieved(counts: dict[int, tuple[int, int]], budget, column: int = 0):
    """A requested budget's count as its runs' records say it (column 0: pet_params, 1: trainable_params);
    an open end (None, 0, infinity) stays as it is."""
    if budget is None or not math.isfinite(budget) or budget <= 0:
        return budget
    return counts[int(budget)][column]


def on_achieved(value: float, counts: dict[int, tuple[int, int]]) -> float:
    """A value of the requested-budget axis (the isotonic fit's crossing, interpolated in log budget between
    two probed budgets) read on the achieved-count axis: the same crossing of the same fit, interpolated in
    log count between the two probes' counts. A probed budget is its count; open ends stay."""
    if not math.isfinite(value) or value <= 0:
        return value
    if int(value) == value and int(value) in counts:
        return float(counts[int(value)][0])
    probed = sorted(counts)
    x = np.log(probed)
    y = np.log([counts[k][0] for k in probed])
    return float(math.exp(np.interp(math.log(value), x, y)))


def budget_columns(
    search: CellSearch,
    result: dict,
    budget_key: str,
    head_params: int | None,
    counts: dict[int, tuple[int, int]],
) -> dict:
    """The row's budgets in the counts the runs' records say (#24 review F1): the search walks a ladder of
    requested budgets (`budget=K`), and the solver sizes every method but APET to the nearest count it can
    take (LoRA's `budget=300` on tiny-bert runs 320 PET parameters), so `estimate`, `ci_lo`/`ci_hi` and
    `smallest_probed` are the runs' pet_params (result.json) and `smallest_probed_trainable` their
    trainable_params, `petsweep thresholds`' unit, read from the same records: the two tables agree. The
    requested budgets are kept in the `*_budget` columns. `smallest_probed` is analysis.thresholds'
    definition (the smallest probed budget whose mean is above the target)."""
    from analysis.thresholds import smallest_k

    smallest = smallest_k(search.scores, result["target_score"])
    return {
        "estimate_budget": result["estimate"],
        "ci_lo_budget": result["ci_lo"],
        "ci_hi_budget": result["ci_hi"],
        "estimate": on_achieved(result["estimate"], counts),
        "ci_lo": float(achieved(counts, result["ci_lo"])),
        "ci_hi": float(achieved(counts, result["ci_hi"])),
        "smallest_probed_budget": smallest,
        "smallest_probed": float(achieved(counts, smallest)),
        "budget_unit": f"pet_params (the runs' result.json; requested: {budget_key})",
        "head_params": head_params,
        "smallest_probed_trainable": float(achieved(counts, smallest, 1)),
    }


def estimate_note(row: dict) -> str:
    """Why a row's `estimate` and `smallest_probed` disagree on whether the target is reached (#24 review F4:
    estimate "inf (not reached)" beside smallest_probed 316). Both are right, by two definitions: the
    estimate is where the monotone (isotonic) fit of the means crosses the target, smallest_probed the first
    probed mean above it (`petsweep thresholds`' definition); a single mean above the target followed by
    lower means at larger budgets is pooled below it by the fit."""
    estimate, smallest = row["estimate"], row["smallest_probed"]
    if math.isinf(estimate) and math.isfinite(smallest):
        return (
            f"a probed mean is above the target at {smallest:g} (smallest_probed, `petsweep thresholds`' "
            "definition) but the monotone fit pools it with lower means at larger budgets (estimate: not "
            "reached)"
        )
    return ""


def unmoved_probes(search: CellSearch, row: dict, unmoved: dict[int, int]) -> int:
    """How many of the probes a row's result rests on say "PET parameters did not move" (their record's
    pet_moved is false: the trained PET parameters changed no dev prediction, so the score is the head's
    alone, and a threshold resting on them is the head's, not the method's; #24 review F8). A row rests on
    the probes at its bracket's ends, at smallest_probed and at the two probed budgets around its estimate.
    They are counted, not dropped: dropping them would change the decisions."""
    rests = {k for k in row["bracket_budget"] if k is not None}
    probed = sorted(search.scores)
    for value in (row["smallest_probed_budget"], row["estimate_budget"]):
        if probed and math.isfinite(value):
            rests |= {max([k for k in probed if k <= value], default=probed[0])}
            rests |= {min([k for k in probed if k >= value], default=probed[-1])}
    return sum(unmoved.get(k, 0) for k in rests)


def unmoved_text(row: dict) -> str:
    """The summary's and `petsweep status`' mark of a row resting on probes whose PET parameters did not
    move (a state written before the column has none)."""
    count = row.get("unmoved_probes") or 0
    probes = "probe whose PET parameters did" if count == 1 else "probes whose PET parameters did"
    return f"; rests on {count} {probes} not move (the head's score)" if count else ""


def _finite(value):
    """JSON without Infinity: an open end is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def state_text(sweep_dir: Path) -> str | None:
    """The search state per cell and target, for `petsweep status` (None: not a threshold search)."""
    path = Path(sweep_dir) / STATE_FILE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    lines = [
        f"threshold search: round {state['round']}, " + ("done" if state["done"] else "searching")
        + f", budget {state['budget_key']} on {ladder_text(state['ladder'])}"
    ]  # fmt: skip
    own = {row["cell"]: row["ladder"] for row in state["rows"] if row.get("ladder")}
    if any(ladder != state["ladder"] for ladder in own.values()):  # each cell's own (#24 round 2, G6)
        lines += [f"  ladder of {cell}: {ladder_text(ladder)}" for cell, ladder in own.items()]
    for row in state["rows"]:
        if "bracket" not in row:
            lines.append(f"  {row['cell']}  {row['target']}: {row['status']}")
            continue
        lo, hi = row["bracket"]
        top = row.get("top", state["ladder"][-1])
        lines.append(
            f"  {row['cell']}  {row['target']}: {status_text(row['status'], top)}, "
            f"bracket ({lo if lo is not None else '-'}, "
            f"{hi if hi is not None else 'beyond'}], {row['runs']} runs"
            + ("" if row["monotone"] else ", not monotone")
            + (f"; stopped: {row['stopped']}" if row.get("stopped") else "")
            + unmoved_text(row)
        )
    return "\n".join(lines)


def ladder_text(budgets: list[int]) -> str:
    return f"{budgets[0]}..{budgets[-1]} ({len(budgets)} budget{'s' * (len(budgets) != 1)})"


def status_text(status: str, top: int) -> str:
    """A row's status as the summary and `petsweep status` print it: a target no probe reached, the interval's
    top included (a target above full fine-tuning, or above what the method reaches), says up to where."""
    return f"not reached up to the interval's top ({top})" if status == "not reached" else status


def axes_given(arguments: list[str], loader=None) -> list[str]:
    """The keys of the command line's sweep axes (a cell's name: its values of these); `loader`: as for
    launchers.expand.parse."""
    return [key for key, values in axes_of(arguments, loader) if len(values) > 1]


def _short(overrides: list[str]) -> str:
    """A one-cell search's name: its backbone, task and method overrides (all of them if none)."""
    named = [o for o in overrides if _key(o) in ("backbone", "task", "method")]
    return " ".join(named or overrides)
