"""A resume of a finished sweep without planning it again (#25: a plan is ~0.13 ms a run, 2 min at 10^6).

What a plan makes of a sweep's runs (each run's dir, the duplicate configs merged, the labels that tell runs
apart) follows from: the runs' overrides, the configs Hydra composes of their config-group choices, the code
that composes, validates, hashes and names them, the working directory (relative paths), home (`~` in data
file names) and the bytes of local data files (a run's id hashes them). A launch keeps that outcome in the
sweep's index dir (<sweep>/.index/plans/<key>.parquet), keyed by a hash of all of these. A later launch of
the same sweep whose key matches, and whose every run the sweep's index says is COMPLETED of its own identity
(verified as `petsweep status` verifies it: each run's files stat'ed, index.StatusScan), launches nothing
and composes, validates and hashes no run. Anything else (a run not finished, no memo, another key) plans as
before.

Not kept, so always planned: runs whose composition interpolates (a `${...}` value), runs across several
sweep dirs, and runs whose id needs the budget solver (`budget=`, APET-style budgets: their ids depend on
model configs the key does not hash; planning.hashes_without_torch). `PETSWEEP_PLAN_MEMO=0` turns it off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

from launchers.planning import CachedComposer, PlannedRun, hashes_without_torch, read_info
from petsweep.records import index
from petsweep.records.files import keep_newest, owned_alone, replace_privately
from petsweep.records.status import State

ENV = "PETSWEEP_PLAN_MEMO"
FORMAT = 1
MEMO_DIR = "plans"  # under the sweep's .index
KEPT = 4  # memos kept per sweep: a few commands resumed in turn (each ~40 bytes a run)
# what decides a plan's outcome beyond index.fingerprint()'s sources (spec/, model/, methods/, records):
# how overrides are expanded, applied and composed, how duplicates and labels are made, and this file
_CODE = (
    "launchers/planning.py",
    "launchers/expand.py",
    "launchers/sweep.py",
    "launchers/plan_memo.py",
    "petsweep/records/labels.py",
)
_CODE_PACKAGES = ("petsweep/compose",)
_LIBRARIES = ("hydra-core", "omegaconf")


def enabled() -> bool:
    return index.enabled() and os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "false", "no")


@functools.cache
def code_fingerprint() -> str:
    """A hash of the code a plan's outcome depends on (taken once per process: the code it loaded)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{FORMAT}\0{index.fingerprint()}\0".encode())
    found = [str(p.relative_to(root)) for pkg in _CODE_PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    for name in [*_CODE, *found]:
        try:
            data = (root / name).read_bytes()
        except OSError:
            data = b"\0missing\0"
        digest.update(name.encode() + b"\0" + data + b"\0")
    for library in _LIBRARIES:
        digest.update(f"{library}={version(library)}\0".encode())
    return digest.hexdigest()[:20]


class MemoKey(NamedTuple):
    """A launch's memo key, and the data files it fingerprinted (save checks them again after the plan)."""

    text: str
    files: list[list[str | None]]  # [name, fingerprint] (spec.identity.file_fingerprint)


def key(run_overrides: list[list[str]], composer: CachedComposer) -> MemoKey | None:
    """The memo key of planning `run_overrides` (in order) here and now; None where no memo may answer (a
    run Hydra composes whole: a value that interpolates or a key the composition lacks; a composition that
    fails: the plan words that error). The data files any run may name are fingerprinted here, before the
    plan reads them, and again by save after it."""
    bases: dict[tuple, str] = {}
    data: set[str] = set()  # data file names
    try:
        digest = hashlib.sha256(f"{code_fingerprint()}\0{os.getcwd()}\0{os.path.expanduser('~')}\0".encode())
        for overrides in run_overrides:
            structural, base = composer.base_of(overrides)
            if base is None:
                return None  # Hydra composes such a run whole (its resolvers may read the environment)
            if structural not in bases:
                bases[structural] = json.dumps(base, sort_keys=True, default=str)
                data.update(_file_names((base.get("task") or {}).get("files")))
            digest.update("\x1f".join(overrides).encode() + b"\x1e")
        for value in composer.values_under("task", "files"):  # task.files=..., task.files.<split>=...
            data.update(_file_names(value))
        for structural in sorted(bases):
            digest.update(f"{structural!r}\0{bases[structural]}\0".encode())
        fingerprints = _fingerprints(data)
        digest.update(json.dumps(fingerprints).encode())
    except Exception:  # noqa: BLE001 (the plan raises it again, worded with its run)
        return None
    return MemoKey(digest.hexdigest()[:32], fingerprints)


def _file_names(value) -> list[str]:
    """The data file names a `task.files` value (or one split's) holds."""
    if isinstance(value, dict):
        return [str(v) for v in value.values() if v]
    return [str(value)] if value else []


def _fingerprints(names) -> list[list[str | None]]:
    """[name, fingerprint] of each local data file, as a run's id hashes it (spec.identity)."""
    from petsweep.spec.identity import file_fingerprint

    return [[name, file_fingerprint(name)] for name in sorted(names)]


def _path(sweep: Path, memo_key: str) -> Path:
    return sweep / index.INDEX_DIR / MEMO_DIR / f"{memo_key}.parquet"


def finished(memo_key: MemoKey | None, run_overrides: list[list[str]], composer: CachedComposer):
    """(runs, labels) of the sweep where the memo of `memo_key` answers and every run is COMPLETED; else None
    (plan it). The runs' `cfg` is None: nothing launches them, and nothing composed them."""
    if memo_key is None or not run_overrides:
        return None
    from petsweep.spec.identity import sweep_dir

    try:
        sweep = sweep_dir(composer(run_overrides[0]))
        memo = _read(_path(sweep, memo_key.text), memo_key.text, len(run_overrides))
        if memo is None or not _all_completed(sweep, set(memo["name"])):
            return None
        runs = [
            PlannedRun(run_overrides[first], None, digest.hex(), sweep / name, State.COMPLETED, dups)
            for name, digest, first, dups in zip(memo["name"], memo["id"], memo["first"], memo["duplicates"])
        ]
        labels = json.loads(f"[{','.join(memo['label'])}]")  # one decode: 10^6 calls are seconds
    except Exception:  # noqa: BLE001 (none, unreadable, not what _write wrote: planned instead)
        return None
    with contextlib.suppress(OSError):
        os.utime(_path(sweep, memo_key.text))  # most recently used: kept by _evict
    return runs, labels


def _read(path: Path, memo_key: str, runs: int) -> dict | None:
    """The memo at `path`, where it is this user's own, written by _write for `memo_key` and `runs` runs."""
    import pyarrow.parquet as pq

    with open(path, "rb") as fh:
        if not owned_alone(os.fstat(fh.fileno())):
            return None  # a shared sweep dir: a memo another user wrote or could change is not used
        table = pq.ParquetFile(fh).read()  # not read_table: it imports pyarrow.dataset and pandas (1 s)
    meta = table.schema.metadata or {}
    said = (meta.get(b"format"), meta.get(b"key"), meta.get(b"runs"))
    if said != (str(FORMAT).encode(), memo_key.encode(), str(runs).encode()):
        return None  # another format, or a memo renamed to this key (a group-writable plans dir)
    memo = {c: table.column(c).to_pylist() for c in ("name", "id", "first", "duplicates", "label")}
    if not memo["name"] or len(memo["name"]) + sum(memo["duplicates"]) != runs:
        return None  # every run of the launch is a planned run or one of their duplicates
    return memo


def _all_completed(sweep: Path, names: set[str]) -> bool:
    """Whether the sweep's index, each run verified against its files, says every run of `names` is
    COMPLETED of its own identity (as planning._listed_status would read it, warnings given as it gives
    them)."""
    import numpy as np

    from launchers.planning import warn_finished

    scan = index.StatusScan(sweep, read_info)
    if not scan.usable:
        return False  # no manifest of this code, lines piled up: the plan reads it (and compacts)
    done = str(State.COMPLETED)
    batches = scan.batches()
    try:
        for batch in batches:
            ok = batch.ok & batch.keep & (batch.state == done) & ~batch.stale
            for i in np.flatnonzero(ok & batch.holding('"warning":"')).tolist():
                if batch.names[i] in names:  # the launch's own runs: another command's are not its to warn of
                    warn_finished(f"{sweep}/{batch.names[i]}", batch.info(i))
            names.difference_update(batch.names[i] for i in np.flatnonzero(ok).tolist())
            for i in np.flatnonzero(batch.keep & ~batch.ok).tolist():
                _settled(sweep, batch.names[i], batch.infos[i], names)
            for name, info in batch.extra:
                _settled(sweep, name, info, names)
            if not names:
                return True  # the rest of the sweep dir is other commands' runs
            if any(name in names for name in batch.names) or any(name in names for name, _ in batch.extra):
                return False  # a run of the launch is here and not COMPLETED: the plan reads the rest
    except index.Damaged:
        return False  # the plan reads it (and the fold writes it anew)
    finally:
        batches.close()  # its stat threads and the sweep dir's fd, where every name was found early
        scan.finish()
    return not names


def _settled(sweep: Path, name: str, info: dict, names: set[str]) -> None:
    """Drop `name` from `names` where its status fields (from a line or its files) say COMPLETED."""
    from launchers.planning import cached_queue, indexed_state

    if name in names and indexed_state(info, f"{sweep}/{name}", cached_queue()) == State.COMPLETED:
        names.discard(name)


def save(memo_key: MemoKey | None, runs: list[PlannedRun], labels: list, run_overrides: list) -> None:
    """Keep what the plan of `run_overrides` made of them under `memo_key` (never raises: a cache)."""
    if memo_key is None or not runs or len({r.path.parts[:-1] for r in runs}) != 1:
        return
    if _fingerprints(name for name, _ in memo_key.files) != memo_key.files:
        return  # a data file changed while the plan read it (R38 Y2): its ids may be of either bytes
    kinds = {(r.cfg.get("budget") is None, (r.cfg.get("method") or {}).get("name")): r.cfg for r in runs}
    if not all(hashes_without_torch(cfg) for cfg in kinds.values()):
        return  # an id the budget solver chose: it depends on model configs the key does not hash
    try:
        _write(_path(runs[0].path.parent, memo_key.text), memo_key.text, runs, labels, run_overrides)
    except Exception as err:  # noqa: BLE001
        index.log.debug("petsweep: plan of %s not kept: %s", runs[0].path.parent, err)


def _write(
    path: Path, memo_key: str, runs: list[PlannedRun], labels: list, run_overrides: list[list[str]]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    first: dict[tuple, int] = {}
    for i, overrides in enumerate(run_overrides):
        first.setdefault(tuple(overrides), i)
    table = pa.table(
        {
            "name": pa.array([r.path.name for r in runs], pa.string()),
            "id": pa.array([bytes.fromhex(r.run_hash) for r in runs], pa.binary()),
            "first": pa.array([first[tuple(r.overrides)] for r in runs], pa.int64()),
            "duplicates": pa.array([r.duplicates for r in runs], pa.int64()),
            "label": pa.array([json.dumps(label) for label in labels], pa.string()),
        }
    ).replace_schema_metadata({"format": str(FORMAT), "key": memo_key, "runs": str(len(run_overrides))})
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_privately(path, lambda fh: pq.write_table(table, fh))
    _evict(path.parent)


def _evict(directory: Path) -> None:
    """Remove all but the KEPT most recently used memos of the sweep, and temporary files a writer that
    died left (older than an hour)."""
    keep_newest(directory, "*.parquet", KEPT)
    for left in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - left.stat().st_mtime > 3600:
                left.unlink()
