"""`petsweep plan`, `status` and `cancel`: tables and actions that read the runs' files on disk only."""

from __future__ import annotations

import os
import signal
import socket
from collections import Counter
from pathlib import Path

from launchers.planning import PlannedRun, indexed_state, run_status, warn_finished
from launchers.planning import read_info_on_disk as read_info
from launchers.sweep import SWEEP_MARKER
from petsweep.records.record import notes
from petsweep.records.status import RunDir, State, run_dirs, visible
from petsweep.spec.errors import PetsweepError
from petsweep.spec.shape import run_shape


def estimate_hours(runs: list[PlannedRun]) -> None:
    """Fill run.extra with hours, GPU-hours, whether it is a guess and its basis (see launchers.costing)."""
    from launchers.costing import Calibration, estimate, measure

    measured = []  # every finished run under the planned runs' runs roots (any sweep), planned or not (#26)
    devices = {}  # the device each finished run trained on, by its run dir
    for root in sorted({run.path.parent.parent for run in runs}):
        for path in sorted(root.glob("*/*/result.json")):
            if not visible(path.parent, 2):
                continue  # a hidden sweep or run is not one (run_dirs)
            result = RunDir(path.parent).result()
            found = measure(result["config"], result) if result and result.get("config") else None
            if found:
                measured.append(found)
            if result and isinstance(result.get("device"), str):
                devices[path.parent] = result["device"]
    calibration = Calibration(measured)  # statistics once, not per planned run (#25)
    for run in runs:
        cfg = _as_it_ran(run, devices.get(run.path))
        seconds, basis, guess = estimate(cfg, run.extra["total_params"], calibration)
        gpus = run_shape(run.cfg).gpus  # on every node
        run.extra.update(hours=seconds / 3600, gpu_hours=seconds / 3600 * gpus, guess=guess, basis=basis)


def _as_it_ran(run: PlannedRun, device: str | None) -> dict:
    """The config a finished run is estimated from: `trainer.device=auto` is the device the run chose (a GPU
    where it asks for one, else what its record says it trained on), so a plan of a finished sweep asks no
    torch where it runs (R23 F3: costing.device_kind asks torch.cuda for `auto`); unfinished runs, and a
    record that names no device, as they are."""
    trainer = run.cfg["trainer"]
    if run.status != State.COMPLETED or trainer.get("device", "auto") != "auto":
        return run.cfg
    if run_shape(run.cfg).on_gpus:
        device = "cuda"  # what device_kind answers for such a run wherever it plans
    if device is None:
        return run.cfg
    return {**run.cfg, "trainer": {**trainer, "device": device}}


def plan_table(runs: list[PlannedRun], fusion: dict | None = None) -> str:
    """The plan, a row per run; `fusion` (launchers.fusion.plan_notes): how each run will train, with
    hydra.launcher.fuse > 1. A run's `differs` column: its overrides that differ between the runs, as the
    sweep's lines and `status` show them (launchers.sweep.differing)."""
    from launchers.sweep import differing

    estimate_hours(runs)
    budgets = any("budget" in r.extra for r in runs)
    shown = [f"[{' '.join(label)}]" if label else "" for label in differing(runs)]
    width = max(map(len, shown), default=0)
    lines = [
        f"{'status':<11} {'run':<58} {'trainable':>13} {'gpus':>4} {'mem GB':>6} {'time min':>8} "
        f"{'hours':>9} {'gpu-h':>9}"
        + (f"  {'differs':<{width}}" if width else "")
        + ("  budget: method's own / target (knobs)" if budgets else "")
        + ("  trains" if fusion else "")
    ]
    for r, differs in zip(runs, shown):
        res, gpus = r.cfg["backbone"]["resources"], run_shape(r.cfg).gpus_per_node
        mark = "~" if r.extra["guess"] else " "
        row = (
            f"{r.status:<11} {r.path.name:<58} {r.extra['trainable_params']:>13,} {gpus:>4} "
            f"{res.get('mem_gb', '-'):>6} {res.get('time_min', '-'):>8} {mark}{r.extra['hours']:>8.4f} "
            f"{r.extra['gpu_hours']:>9.3f}"
            + (f"  {differs:<{width}}" if width else "")
            + (f"  {_budget_text(r.extra.get('budget'))}" if budgets else "")
            + (f"  {fusion[r.path]}" if fusion else "")
        )
        lines.append(row.rstrip())
    todo = [r for r in runs if r.status != State.COMPLETED]
    lines.append(
        f"total: {len(runs)} runs, {len(todo)} to run, "
        f"{sum(r.extra['gpu_hours'] for r in todo):.2f} GPU-hours to go "
        f"({sum(r.extra['hours'] for r in todo):.3f} run-hours, training and evaluation)"
    )
    bases = sorted({r.extra["basis"] for r in todo})
    lines += [f"  estimated from: {b}" for b in bases]
    notes = Counter(note for r in runs for note in r.extra.get("count_notes", []))
    lines += [f"  count note ({n} runs): {note}" for note, n in notes.items()]
    lines.append(
        "  gpus, mem GB, time min: what each run asks for (backbone.resources); hours, gpu-h: the estimate"
    )
    if any(r.extra["guess"] for r in todo):
        lines.append(
            "  ~ marks a guess from FLOPs: no finished run of that backbone and method on that device yet"
        )
    return "\n".join(lines)


def _budget_text(budget: dict | None) -> str:
    """`budget=bitfit: 4,608 / 4,608 (r=3)`: the plan's budget column."""
    if not budget:
        return "-"
    knobs = ",".join(f"{k}={v}" for k, v in budget["knobs"].items())
    return f"{budget['requested']}: {budget['achieved']:,} / {budget['target']:,} ({knobs or 'as is'})"


def sweep_runs(root: Path) -> list[RunDir]:
    """The run directories of a sweep dir; not a petsweep sweep dir is one clear error."""
    root = Path(root)
    runs = [RunDir(p) for p in run_dirs(root)] if root.is_dir() else []
    if not root.is_dir() or not ((root / SWEEP_MARKER).exists() or runs):
        raise PetsweepError(
            f"{root} is not a petsweep sweep directory (no {SWEEP_MARKER}, no run dirs with "
            f"status.json); give <runs_root>/<sweep_name>"
        )
    return runs


def runs_under(path: Path) -> list[RunDir]:
    """The runs a path names: a run dir, a sweep dir, or a runs root holding sweep dirs (all of them)."""
    path = Path(path)
    if (path / "status.json").exists():
        return [RunDir(path)]
    if path.is_dir() and not (path / SWEEP_MARKER).exists() and not run_dirs(path):
        nested = [RunDir(p) for p in run_dirs(path, 2)]
        if nested:
            return nested
    return sweep_runs(path)


def status_rows(path: Path) -> list[dict]:
    """One dict per run: its state, step of max, last and best dev score, ETA, and score or error."""
    from launchers.planning import cached_queue
    from petsweep.records.labels import read as read_labels

    queue = cached_queue()
    rows = []
    indexed = _indexed_rows(Path(path), queue)
    if indexed is not None:
        return indexed
    runs = runs_under(path)
    labels = {d: read_labels(d) for d in {r.path.parent for r in runs} | set(_planned_sweeps(path))}
    for run in runs:
        state = run_status(run.path, queue, solve=False)
        status, sweep = run.status() or {}, run.path.parent
        rows.append(_row(state, run.path.name, sweep.name, str(run.path), status, run, labels[sweep]))
    rows += _not_started(path, {r.path for r in runs}, labels)
    return sorted(rows, key=lambda r: (r["sweep"], r["run"])) if len(runs) != len(rows) else rows


def _indexed_rows(path: Path, queue) -> list[dict] | None:
    """status_rows of a sweep dir or runs root from the sweeps' indexes (petsweep.records.index), each entry
    checked against its run's files; a run that is RUNNING or QUEUED is read from its files (liveness,
    progress). None: not indexed (PETSWEEP_INDEX=0, or one run dir)."""
    from petsweep.records import index
    from petsweep.records.labels import read as read_labels

    if not index.enabled() or (path / "status.json").exists():
        return None
    snapshots = [index.Snapshot(path, read_info=read_info, unchecked_ok=True)] if path.is_dir() else []
    if snapshots and not snapshots[0].runs and not (path / SWEEP_MARKER).exists():
        subdirs = sorted(filter(_visible_dir, path.iterdir()))
        nested = [index.Snapshot(d, read_info=read_info, unchecked_ok=True) for d in subdirs]
        snapshots = [s for s in nested if s.runs] or snapshots
    if not any(s.runs for s in snapshots):
        sweep_runs(path)  # not a sweep dir: its one clear error (or a sweep whose runs have not started)
    sweeps = {Path(s.sweep) for s in snapshots if s.runs}
    if Path(snapshots[0].sweep) == path and snapshots[0].runs:  # a sweep dir: no glob over its 10^6 runs
        planned = [path] if (path / SWEEP_MARKER).exists() else []
    else:
        planned = _planned_sweeps(path)
    labels = {d: read_labels(d) for d in sweeps | set(planned)}
    rows, found = [], set()
    for snapshot in snapshots:
        sweep = Path(snapshot.sweep)
        for name, info in snapshot.info.items():
            found.add(f"{snapshot.sweep}/{name}")
            rows.append(_indexed_row(sweep, name, info, queue, labels[sweep]))
        snapshot.finish()
    more = _not_started(path, found, labels, planned)
    # in name order as the files give them: the snapshot holds the manifest's runs first, then those of lines
    return sorted(rows + more, key=lambda r: (r["sweep"], r["run"]))


def _visible_dir(path: Path) -> bool:
    return visible(path) and path.is_dir()  # run_dirs' rule: a hidden dir is no sweep


def _indexed_row(sweep: Path, name: str, info: dict, queue, labels: dict) -> dict:
    """One status row from a run's index entry, as status_rows reads it from the files."""
    path = f"{sweep}/{name}"
    state = indexed_state(info, path, queue)
    if state is None:
        run = RunDir(Path(path))  # live or not: asked of its process, heartbeat or SLURM
        return _row(
            run_status(run.path, queue, solve=False), name, sweep.name, path, run.status() or {}, run, labels
        )
    return _row(state, name, sweep.name, path, info, info, labels)


def _row(state: State, name: str, sweep: str, path: str, status: dict, read, labels: dict) -> dict:
    """A status row: `status` as status.json holds it; `read` the RunDir, or the run's index entry (which
    holds its result's and progress.json's fields)."""
    if isinstance(read, RunDir):
        result = read.result() if state == State.COMPLETED else None
        progress = read.progress()
    else:
        result = read.get("result") if state == State.COMPLETED else None
        progress = read.get("progress") or {}
    return {
        "state": str(state),
        "run": name,
        "sweep": sweep,
        "path": path,
        "step": result["steps"] if result else progress.get("step"),
        "max_steps": result["steps"] if result else progress.get("max_steps"),
        "dev_score": progress.get("dev_score"),
        "best_dev_score": result["best_dev_score"] if result else progress.get("best_dev_score"),
        "eta_s": progress.get("eta_s") if state == State.RUNNING else None,
        "metric": result["metric"] if result else None,
        "score": result["score"] if result else None,
        "notes": notes(result) + _unchecked(state, read, result),  # PET parameters did not move, ...
        "error": status.get("error") if state != State.COMPLETED else None,
        "updated": status.get("updated"),
        "label": labels.get(name) or [],  # what differs (petsweep.records.labels)
    }


def _unchecked(state: State, read, result: dict | None) -> list[str]:
    """The note of a finished `budget=` run whose identity status did not check: the id holds what the
    budget solver chooses (torch); `petsweep plan` and `rehash` check it (run.rehash.stale_record)."""
    if state != State.COMPLETED:
        return []
    if isinstance(read, RunDir):
        unchecked = ((result or {}).get("config") or {}).get("budget") is not None
    else:
        unchecked = bool(read.get("unchecked"))
    return ["identity unchecked (budget=; `petsweep plan` checks it)"] if unchecked else []


def _planned_sweeps(path: Path) -> list[Path]:
    """The sweep dirs `path` names (itself, or those under a runs root) by their sweep.json."""
    path = Path(path)
    if (path / "status.json").exists():
        return []  # one run
    if (path / SWEEP_MARKER).exists():
        return [path]
    return sorted(p.parent for p in path.glob(f"*/{SWEEP_MARKER}") if _visible_dir(p.parent))


def _not_started(path: Path, found: set[Path], labels: dict, planned: list[Path] | None = None) -> list[dict]:
    """A row per run a sweep planned (its sweep.json) that has no run dir yet: NEW, as a rerun would launch
    it (a 4-run sweep cancelled after 2 starts reads 2 cancelled, 2 new)."""
    import json

    rows = []
    for sweep in _planned_sweeps(path) if planned is None else planned:
        try:
            planned = json.loads((sweep / SWEEP_MARKER).read_text()).get("runs") or []
        except (OSError, ValueError):
            continue
        for name in planned:
            if sweep / name in found or f"{sweep}/{name}" in found or (sweep / name / "status.json").exists():
                continue
            rows.append(
                {
                    **dict.fromkeys(
                        ("step", "max_steps", "dev_score", "best_dev_score", "eta_s", "metric", "score")
                    ),
                    **{"error": None, "updated": None, "notes": []},
                    "state": str(State.NEW),
                    "run": name,
                    "sweep": sweep.name,
                    "path": str(sweep / name),
                    "label": labels.get(sweep, {}).get(name) or [],
                }
            )
    return rows


# a `status` table of more runs than this lists only the runs not done (at most this many of them), then the
# counts; `petsweep status --all` lists every run (#25: a line per run of 10^6 runs is 100 MB of text)
LIST_UP_TO = 1000


def status_table(path: Path, every: bool = False, quick: bool = False) -> str:
    """The status table: a line per run (of a sweep of more than LIST_UP_TO runs, without `every`, only the
    runs not done), then the count of runs in each state. `quick`: from the sweep's index alone, no run
    stat'ed (index.StatusScan says what that cannot see), where its index can answer so; a note says so."""
    path = Path(path)
    scanned = _scanned(path, every, quick)
    if scanned is None:
        rows = status_rows(path)
        listed = Listing(every)
        for r in rows:
            listed.add(r)
        sweeps = len({r["sweep"] for r in rows}) > 1
    else:
        listed, sweeps = scanned, False
    text = _table_text(path, listed, sweeps)
    if quick:
        text += f"\n{QUICK_NOTE if scanned is not None else QUICK_FELL_BACK}"
    return text


QUICK_NOTE = (
    "(--quick: from the sweep's index alone, no run dir checked: an edit in place, a run written without "
    "the index, or a line written while the index was folded is not seen; `petsweep status` without --quick "
    "checks every run's files)"
)
QUICK_FELL_BACK = (  # R37 W8: it read every run where the index could not answer, and said nothing
    "(--quick: the index could not answer alone (not one sweep dir, no manifest of this code yet, or lines "
    "of many runs to fold): every run was checked, as without --quick)"
)


class Listing:
    """The lines a status table prints, as rows arrive in order: every row while there are at most
    LIST_UP_TO (or `every`), after that the rows not done, at most LIST_UP_TO; and the count of each state."""

    def __init__(self, every: bool = False):
        self.every = every
        self.rows: list[dict] = []
        self.counts: Counter = Counter()
        self.total = 0
        self.dropped = 0  # rows not done past LIST_UP_TO (summary)
        self.shrunk = False

    @property
    def summary(self) -> bool:
        return not self.every and self.total > LIST_UP_TO

    def count(self, state: str, n: int = 1) -> None:
        """Rows of `state` that are counted but need no line (done, in a summary)."""
        self.counts[state] += n
        self.total += n
        self._shrink()

    def wants(self, state: str) -> bool:
        """Whether a row of this state, arriving now, may be printed (else count() it)."""
        return not self.summary or state != State.COMPLETED

    def add(self, row: dict) -> None:
        self.counts[row["state"]] += 1
        self.total += 1
        if self.wants(row["state"]):
            self.rows.append(row)
        self._shrink()

    def _shrink(self) -> None:
        if not self.summary:
            return
        if not self.shrunk:  # the done rows kept while all rows were to be listed
            self.rows = [r for r in self.rows if r["state"] != State.COMPLETED]
            self.shrunk = True
        if len(self.rows) > LIST_UP_TO:
            self.dropped += len(self.rows) - LIST_UP_TO
            del self.rows[LIST_UP_TO:]


def _table_text(path: Path, listed: Listing, sweeps: bool) -> str:
    from petsweep.train.progress import eta_text

    rows = listed.rows
    width = max([58] + [len(r["run"]) for r in rows])
    lines = [f"{'state':<11} {'run':<{width}} {'step':>11} {'dev':>7} {'eta':>8}  result"]
    for r in rows:
        step = f"{r['step']}/{r['max_steps']}" if r["step"] is not None else "-"
        dev = r["best_dev_score"] if r["state"] == State.COMPLETED else r["dev_score"]
        dev = f"{dev:.4f}" if dev is not None else "-"
        eta = eta_text(r["eta_s"]) if r["eta_s"] is not None else "-"
        if r["score"] is not None:
            detail = f"{r['metric']} {r['score']:.4f}" + "".join(f" ({n})" for n in r["notes"])
        elif r["error"]:
            detail = " ".join(r["error"].split())[:100]
            if (Path(r["path"]) / "error.txt").exists():
                detail += f"  traceback: {Path(r['path']) / 'error.txt'}"
        else:
            detail = ""
        name = f"{r['sweep']}/{r['run']}" if sweeps else r["run"]
        differs = f"[{' '.join(r['label'])}] " if r["label"] else ""  # what differs from the sweep's others
        lines.append(
            f"{r['state']:<11} {name:<{width}} {step:>11} {dev:>7} {eta:>8}  {differs}{detail}".rstrip()
        )
    if listed.summary:
        done = listed.counts.get(str(State.COMPLETED), 0)
        more = f", nor the {listed.dropped} not done past the first {LIST_UP_TO}" if listed.dropped else ""
        lines.append(
            f"({done} done runs not listed{more}: over {LIST_UP_TO} runs, only those not done are; "
            "`petsweep status --all` lists every run)"
        )
    summary = ", ".join(f"{n} {State(s).word}" for s, n in sorted(listed.counts.items()))
    from launchers.threshold_sweep import state_text

    search = state_text(path)  # a threshold search's state per cell and target (search_state.json)
    return "\n".join(lines + [f"{listed.total} runs: {summary}"] + ([search] if search else []))


_SETTLED = [str(s) for s in (State.COMPLETED, State.FAILED, State.CANCELLED, State.INTERRUPTED, State.NEW)]


def _scanned(path: Path, every: bool, quick: bool = False) -> Listing | None:
    """The status table's rows of a sweep dir from its index a manifest row group at a time
    (petsweep.records.index.StatusScan, #25): states counted in bulk from the manifest's typed columns, a row
    (dict) made only for a line the table prints, memory flat in the runs. None where the index cannot
    answer so (not a sweep dir, no manifest of this code, lines piled up): status_rows reads it then."""
    import json

    from launchers.planning import cached_queue
    from petsweep.records import index
    from petsweep.records.labels import read as read_labels

    if not index.enabled() or (path / "status.json").exists() or not path.is_dir():
        return None
    scan = index.StatusScan(path, read_info, quick=quick, unchecked_ok=True)  # read_info leaves them so
    if not scan.usable:
        return None
    queue = cached_queue()
    labels = read_labels(path)
    planned: list[str] = []
    if (path / SWEEP_MARKER).exists():
        try:
            planned = sorted(json.loads((path / SWEEP_MARKER).read_text()).get("runs") or [])
        except (OSError, ValueError):
            planned = []
    try:
        return _listed(path, scan, every, planned, queue, labels)
    except index.Damaged:  # status_rows reads it (and the fold writes it anew)
        return None


def _listed(path: Path, scan, every: bool, planned: list[str], queue, labels) -> Listing:
    """_scanned's table of the runs a StatusScan gives."""
    import numpy as np

    listed = Listing(every)
    at = 0  # planned runs before this one have had their NEW row, or have a run dir
    settled = np.array(_SETTLED, dtype=object)
    for batch in scan.batches():
        found = []  # (name, row or None: counted only)
        fine = batch.ok & batch.keep & np.isin(batch.state, settled)
        state = batch.state.copy()
        state[fine & (batch.state == str(State.COMPLETED)) & batch.stale] = str(State.NEW)
        warned = fine & (state == str(State.COMPLETED)) & batch.holding('"warning":"')  # a few of 10^6
        for i in np.flatnonzero(warned).tolist():
            warn_finished(f"{path}/{batch.names[i]}", batch.info(i))  # as indexed_state does
        for i in np.flatnonzero(batch.keep & ~fine).tolist():  # lines, files, live runs: as status_rows
            found.append((batch.names[i], _indexed_row(path, batch.names[i], batch.info(i), queue, labels)))
        found += [(name, _indexed_row(path, name, info, queue, labels)) for name, info in batch.extra]
        if every or listed.total + len(found) + int(fine.sum()) <= LIST_UP_TO:
            shown = np.flatnonzero(fine)
        else:
            shown = np.flatnonzero(fine & (state != str(State.COMPLETED)))
            done = fine & (state == str(State.COMPLETED))
            listed.count(str(State.COMPLETED), int(done.sum()))
        for i in shown.tolist():
            name, info = batch.names[i], batch.info(i)
            found.append((name, _row(State(state[i]), name, path.name, f"{path}/{name}", info, info, labels)))
        found.sort(key=lambda pair: pair[0])
        if planned:
            names = set(batch.names[i] for i in np.flatnonzero(batch.keep).tolist()) | {n for n, _ in found}
            last = max(batch.names[-1] if batch.names else "", found[-1][0] if found else "")
            news = []
            while at < len(planned) and planned[at] <= last:
                if planned[at] not in names:
                    news.append((planned[at], _new_row(path, planned[at], labels)))
                at += 1
            found = sorted(found + news, key=lambda pair: pair[0]) if news else found
        for _, row in found:
            listed.add(row)
    for name in planned[at:]:
        listed.add(_new_row(path, name, labels))
    scan.finish()
    return listed


def _new_row(sweep: Path, name: str, labels: dict) -> dict:
    """The row of a run a sweep planned that has no run dir yet (as _not_started makes it)."""
    return {
        **dict.fromkeys(("step", "max_steps", "dev_score", "best_dev_score", "eta_s", "metric", "score")),
        **{"error": None, "updated": None, "notes": []},
        "state": str(State.NEW),
        "run": name,
        "sweep": sweep.name,
        "path": str(sweep / name),
        "label": labels.get(name) or [],
    }


def find_run(name: str, root: Path) -> RunDir:
    """A run by its dir, or by a prefix of its hash (the dir name ends with the first 12 hex digits; longer
    prefixes are matched against result.json's run_id); none or several is one clear error."""
    path = Path(name)
    if (path / "status.json").exists():
        return RunDir(path)
    prefix = name.lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise PetsweepError(f"run: {name!r} is neither a run dir nor a hash prefix (hex digits)")
    found = [
        RunDir(p)
        for p in run_dirs(root, 2)
        if p.name.rsplit("-", 1)[-1].startswith(prefix[:12])
        and (len(prefix) <= 12 or ((RunDir(p).result() or {}).get("run_id") or "").startswith(prefix))
    ]
    if len(found) != 1:
        where = f"{len(found)} runs under {root} match" if found else f"no run under {root} matches"
        listed = "".join(f"; {r.path}" for r in found[:5])
        raise PetsweepError(f"run: {where} hash prefix {name!r}{listed}")
    return found[0]


def show_text(run: RunDir) -> str:
    """One run on a page: what it is, where it stands, what it scored and trained, where its files are."""
    import yaml

    from petsweep.model.resolve import semantic_config
    from petsweep.train.progress import eta_text

    [row] = status_rows(run.path)
    status, result = run.status() or {}, run.result()
    config = result["config"] if result else semantic_config(run.config())
    lines = [
        f"run      {run.path}",
        f"state    {row['state']}" + (f"  ({row['error']})" if row["error"] else ""),
    ]
    if row["step"] is not None:
        eta = f", ETA {eta_text(row['eta_s'])}" if row["eta_s"] is not None else ""
        lines.append(f"step     {row['step']}/{row['max_steps']}{eta}")
    if result:
        lines.append(
            f"score    {result['metric']} {result['score']:.4f} on test (best dev {row['best_dev_score']})"
            + "".join(f" ({n})" for n in row["notes"])
        )
        lines.append("metrics  " + ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items()))
        lines.append(
            f"params   trainable {result['trainable_params']:,} of {result['total_params']:,} "
            f"(method's own {result['pet_params']:,})"
        )
        lines.append(
            f"ran      {result['steps']} steps in {result['train_time_s']:.1f} s on {result['device']} "
            f"({result['precision']}, deepspeed {result['deepspeed']}, {result.get('ranks', 1)} rank(s))"
        )
    elif status.get("host"):
        lines.append(f"process  {status.get('pid')} on {status.get('host')}")
    lines.append(
        "files    " + ", ".join(sorted(p.name for p in run.path.iterdir() if not p.name.startswith(".")))
    )
    lines.append("config")
    lines += ["  " + line for line in yaml.safe_dump(config, sort_keys=False).splitlines()]
    return "\n".join(lines)


def cancel(root: Path) -> list[str]:
    """Stop the sweep's queued and running runs: scancel for SLURM jobs, SIGTERM for local processes.

    A stopped run records CANCELLED (a running one from its SIGTERM handler); a rerun resumes it.
    """
    from launchers import slurm
    from launchers.planning import cached_queue
    from petsweep.records.status import CANCELLED, cancel_sweep

    runs = sweep_runs(root)  # checked before the marker is written: a wrong dir is an error, not a new file
    # first: the local pool starts no further run, and a run started meanwhile stops at once
    cancel_sweep(root)
    queue = cached_queue()
    stopped = []
    for run in runs:
        status, state = run.status() or {}, run_status(run.path, queue, solve=False)
        if state not in (State.RUNNING, State.QUEUED):
            continue
        if slurm.cancel(run.path):
            if state == State.QUEUED:
                run.set_status(CANCELLED, error="cancelled before it started")
        elif status.get("host") == socket.gethostname():
            os.kill(status["pid"], signal.SIGTERM)
        else:
            continue
        stopped.append(run.path.name)
    return stopped
