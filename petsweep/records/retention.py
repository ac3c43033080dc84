"""What a finished run keeps on disk (`trainer.keep`), what a sweep's files cost (`petsweep du`), and pruning
finished runs after the fact (`petsweep prune`).

`trainer.keep` (not part of a run's identity: it changes no number):
- `checkpoints` (the default, as before): everything a run writes stays, its newest two checkpoints too;
- `weights`: once the run is recorded COMPLETED its checkpoints go; its selected weights
  (pet_weights.safetensors: the method's and a trained head's; what export, init_from and transfer load) and
  its records stay;
- `records`: the weights go too; the records (status, result, config, provenance, metrics) and logs stay.

Nothing is removed before status.json reads COMPLETED (the run then never trains again, so its checkpoints
are never read again); a kill between the record and the pruning leaves a COMPLETED run with its files, which
a later request of the same run (run.py, a fused group) or `petsweep prune` prunes. What was removed is
written first to `pruned.json`, so that whatever needs the removed files says in one line why they are gone.

This module imports no torch: `petsweep du` and `prune` only list, stat and unlink.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from petsweep.records.files import replace_file
from petsweep.records.status import remove, visible
from petsweep.spec.config import KEEPS  # each keeps less than the one before
from petsweep.spec.errors import ConfigError, PetsweepError

if TYPE_CHECKING:
    from petsweep.records.index import IdentityCheck

DEFAULT = KEEPS[0]
WEIGHTS = "pet_weights.safetensors"
CHECKPOINTS = "checkpoints"
MARKER = "pruned.json"
# what each setting removes from a COMPLETED run dir
REMOVES = {"checkpoints": (), "weights": (CHECKPOINTS,), "records": (CHECKPOINTS, WEIGHTS)}
# the parts `petsweep du` reports: checkpoints/, the selected weights, and every other file of a run dir
PARTS = ("checkpoints", "weights", "records")


def check_keep(value, key: str = "trainer.keep") -> str:
    if value not in KEEPS:
        raise ConfigError(key, value, f"choose one of: {', '.join(KEEPS)}")
    return value


def _tree(path: str | Path, st: os.stat_result | None = None) -> tuple[int, int, int]:
    """(apparent bytes, allocated bytes, inodes) of `path` and everything below it, by lstat and scandir (a
    link counts as itself); (0, 0, 0) where it is absent. `st`: its lstat where the caller has it."""
    try:
        st = st or os.lstat(path)
    except FileNotFoundError:
        return 0, 0, 0
    size, blocks, inodes = st.st_size, st.st_blocks, 1
    stack = [str(path)] if stat.S_ISDIR(st.st_mode) else []
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        est = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    size, blocks, inodes = size + est.st_size, blocks + est.st_blocks, inodes + 1
                    if stat.S_ISDIR(est.st_mode):
                        stack.append(entry.path)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return size, blocks * 512, inodes


def run_usage(run_dir: str | Path) -> dict:
    """A run dir's files by part: {part: {"bytes", "disk", "inodes"}} (disk: allocated bytes, as du counts
    them; the run dir's own inode counts under records). One scandir of the run dir, then of what is below."""
    parts = {part: {"bytes": 0, "disk": 0, "inodes": 0} for part in PARTS}
    try:
        st = os.lstat(run_dir)
        with os.scandir(run_dir) as listing:
            entries = list(listing)
    except FileNotFoundError:
        return parts
    parts["records"] = {"bytes": st.st_size, "disk": st.st_blocks * 512, "inodes": 1}
    for entry in entries:
        part = {CHECKPOINTS: "checkpoints", WEIGHTS: "weights"}.get(entry.name, "records")
        try:
            est = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        size, blocks, inodes = _tree(entry.path, est)
        use = parts[part]
        for key, value in (("bytes", size), ("disk", blocks), ("inodes", inodes)):
            use[key] += value
    return parts


def pruned(run_dir: str | Path) -> dict | None:
    """What was removed from a run dir (pruned.json), or None where nothing was."""
    try:
        marker = json.loads((Path(run_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def removable(run_dir: str | Path, keep: str) -> list[Path]:
    """The paths `keep` would remove from the run dir that are still there."""
    run_dir = Path(run_dir)
    return [run_dir / name for name in REMOVES[check_keep(keep)] if os.path.lexists(run_dir / name)]


def _state(run_dir: Path) -> str | None:
    from petsweep.records.status import RunDir

    return RunDir(run_dir).state()


def prune(run_dir: str | Path, keep: str, by: str, dry_run: bool = False) -> int | None:
    """Remove what `keep` does not keep from a COMPLETED run dir; returns the bytes freed (allocated on disk,
    or that would be), None where nothing is removed.
    A run that is not COMPLETED (status.json, with a readable result.json) is left as it is: its checkpoints
    are what it resumes from. pruned.json says what goes, before it goes. `by`: what asked (the setting, or
    the command), for the one line that later says why a file is gone."""
    run_dir = Path(run_dir)
    doomed = removable(run_dir, keep)
    if not doomed or _state(run_dir) != "COMPLETED":
        return None
    freed = sum(_tree(path)[1] for path in doomed)  # allocated bytes, as du and `petsweep du` count them
    if dry_run:
        return freed
    before = pruned(run_dir) or {}
    stricter = max(KEEPS.index(keep), KEEPS.index(before.get("keep", DEFAULT)))
    marker = {
        "keep": KEEPS[stricter],
        "by": by,
        "removed": sorted({*before.get("removed", []), *(path.name for path in doomed)}),
        "bytes": int(before.get("bytes", 0)) + freed,
        "time": time.time(),
    }
    # renamed into place, not fsynced (7 ms a run here; it only words an error): a killed process leaves it
    # whole or absent, and the removals come after it
    text = json.dumps(marker, indent=2, sort_keys=True) + "\n"
    replace_file(run_dir / MARKER, lambda fh: fh.write(text.encode()))  # a kill's temp: next claim clears it
    for path in doomed:
        remove(path)
    return freed


def apply(run_dir: str | Path, keep: str | None) -> int:
    """The run's own setting, once it is COMPLETED (app.record_completed, and a request of a finished run);
    nothing to do (the default, or nothing left to remove) costs a stat or two."""
    keep = keep or DEFAULT
    if keep == DEFAULT or not removable(run_dir, keep):
        return 0
    from petsweep.records.status import RunDir

    with RunDir(run_dir).locked():  # under the claim lock, as petsweep invalidate moves runs
        return prune(run_dir, keep, by=f"trainer.keep={keep}") or 0


def weights_gone(run_dir: str | Path) -> str | None:
    """Why a finished run dir has no pet_weights.safetensors (a clause naming the setting that removed it),
    or None where the file is there."""
    run_dir = Path(run_dir)
    if (run_dir / WEIGHTS).exists():
        return None
    marker = pruned(run_dir)
    if marker is not None and WEIGHTS in marker.get("removed", []):
        return (
            f"its trained weights ({WEIGHTS}) were removed by {marker.get('by', 'trainer.keep')} "
            f"(trainer.keep={marker.get('keep')} keeps the records only); to have them again, move the run "
            "aside with `petsweep invalidate` and train it again with trainer.keep=weights"
        )
    return f"it has no {WEIGHTS} (deleted by hand?): only its records are left"


def require_weights(run_dir: str | Path) -> None:
    """PetsweepError (one line naming the run and the setting) where a finished run's weights are gone."""
    why = weights_gone(run_dir)
    if why is not None:
        raise PetsweepError(f"{run_dir}: {why}")


# ---- sweeps: petsweep du and petsweep prune ----


def _run_dirs(sweep_dir: Path) -> list[Path]:
    """The run dirs (holding status.json) directly in `sweep_dir`, by scandir. A link to a run dir is not
    followed, unlike status's listing (run_dirs): what it points at belongs to another sweep, which counts
    and prunes it; `du` and `prune` never reach through a link to remove files."""
    found = []
    with os.scandir(sweep_dir) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and visible(Path(entry.path)):
                if os.path.exists(os.path.join(entry.path, "status.json")):
                    found.append(Path(entry.path))
    return sorted(found)


def sweeps_of(root: str | Path) -> list[Path]:
    """The sweep dirs `root` names: itself where it holds run dirs, else each sweep dir in it (runs root)."""
    root = Path(root)
    if not root.is_dir():
        raise PetsweepError(f"{root}: no such directory; give <runs_root>/<sweep_name> or a runs root")
    if _run_dirs(root):
        return [root]
    with os.scandir(root) as entries:
        sweeps = sorted(
            Path(e.path)
            for e in entries
            if e.is_dir() and not e.name.startswith(".") and _run_dirs(Path(e.path))
        )
    if not sweeps:
        raise PetsweepError(
            f"{root} holds no petsweep runs (no <run dir>/status.json); give <runs_root>/<sweep_name>"
        )
    return sweeps


def sweep_usage(sweep_dir: str | Path) -> dict:
    """A sweep dir's bytes: its runs' parts summed, how many runs hold checkpoints and weights, and the
    sweep's own files beside its runs (.index, .launcher, .invalidated: runs moved aside), by name."""
    sweep_dir = Path(sweep_dir)
    runs = _run_dirs(sweep_dir)
    total = {part: {"bytes": 0, "disk": 0, "inodes": 0} for part in PARTS}
    holding = {"checkpoints": 0, "weights": 0}
    for run in runs:
        for part, use in run_usage(run).items():
            for key in use:
                total[part][key] += use[key]
            if part in holding and use["inodes"]:
                holding[part] += 1
    beside = {}
    names = {run.name for run in runs}
    with os.scandir(sweep_dir) as entries:
        for entry in entries:
            if entry.name not in names:
                size, blocks, inodes = _tree(Path(entry.path))
                beside[entry.name] = {"bytes": size, "disk": blocks, "inodes": inodes}
    return {"sweep": str(sweep_dir), "runs": len(runs), "parts": total, "holding": holding, "beside": beside}


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def usage_text(usage: dict) -> str:
    """`petsweep du`'s lines for one sweep (disk: allocated bytes, as du counts them)."""
    runs, parts = usage["runs"], usage["parts"]
    disk = sum(p["disk"] for p in parts.values())
    inodes = sum(p["inodes"] for p in parts.values())
    per = max(runs, 1)
    lines = [
        f"{usage['sweep']}: {human(disk)} in {runs} runs, {human(disk / per)} a run, "
        f"{inodes / per:.0f} inodes a run"
    ]
    for part in PARTS:
        use = parts[part]
        share = 100 * use["disk"] / disk if disk else 0.0
        held = f" ({usage['holding'][part]} runs hold them)" if part in usage["holding"] else ""
        lines.append(f"  {part:<12}{human(use['disk']):>10} {share:5.1f}%  {use['inodes']:>9} inodes{held}")
    if usage["beside"]:
        beside = usage["beside"]
        lines.append(
            f"  {'beside runs':<12}{human(sum(b['disk'] for b in beside.values())):>10}         "
            f"{sum(b['inodes'] for b in beside.values()):>9} inodes ({', '.join(sorted(beside))})"
        )
    return "\n".join(lines)


def prune_sweep(
    sweep_dir: str | Path, keep: str | None, dry_run: bool = False, check: IdentityCheck | None = None
) -> dict:
    """Prune every COMPLETED run of a sweep to `keep` (None: each run's own trainer.keep, as its config.yaml
    says: what a kill between its record and its pruning left undone). Each run is pruned under its claim
    lock, after checking again that it is COMPLETED, and its index line written again (a prune moves the
    run dir's mtime: `check`, the identity check its line holds, as RunDir.set_status takes it). Returns
    {"freed", "pruned", "runs", "left"}: bytes freed (or that would be), runs pruned (or that would be),
    runs seen, runs not COMPLETED left as they are."""
    from petsweep.records import index
    from petsweep.records.status import RunDir

    if keep is not None:
        check_keep(keep, "--keep")
    freed = count = left = 0
    runs = _run_dirs(Path(sweep_dir))
    for path in runs:
        run = RunDir(path)
        if run.state() != "COMPLETED":
            left += 1
            continue
        if not removable(path, "records"):  # nothing left to remove: its config need not be read
            continue
        wanted = keep or ((run.config().get("trainer") or {}).get("keep") or DEFAULT)
        doomed = removable(path, wanted)
        if not doomed:
            continue
        if dry_run:
            got = sum(_tree(p)[1] for p in doomed)
        else:
            by = f"petsweep prune --keep {wanted}" if keep else f"trainer.keep={wanted}"
            with run.locked():  # a run moved aside or claimed meanwhile is re-checked in prune()
                got = prune(path, wanted, by)
            if got is not None:
                index.record(run, check)
        if got is not None:
            freed, count = freed + got, count + 1
    return {"freed": freed, "pruned": count, "runs": len(runs), "left": left}
