"""The last `collect`'s table, kept in the sweep index and patched for the runs changed since (#25).

A collect through the index leaves `<first sweep>/.index/collect-<key>.pkl` (key: the sweep dirs read): the
table as load._frame built it (before load._finish: the sweeps' runs in name order), each row's run and stat
signature, its layout (the row's keys in order) and, per column, each cell's kind (its Python type and
whether pandas reads it as missing). The next collect of the same sweeps stats every run (Snapshot, as
before) but reads only the runs whose signature moved or that are new (Snapshot.rows_of), drops the runs
that are gone, and patches the kept table, so what grows with the runs is vectorised (a numpy compare, a
pandas take) and what reads files grows with the runs changed.

A patch gives what a collect from scratch gives, cell by cell, or nothing: pd.DataFrame(rows) types a
column by the set of its cells' kinds (checked on one exemplar per kind, and against the kept dtype), so a
column whose kinds still type as they did keeps its dtype and takes the new cells converted to it; the
column order is recomputed from the rows' layouts as pd.DataFrame(rows) orders it. Where a column's dtype
or the set of columns would change, `patched` answers None and collect builds the table anew. A row read in
the clock tick of a write (index.RACY_S) or from a W&B summary (which may still change) is kept with no
signature, so the next collect reads it again, as the index does.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from petsweep.records.files import keep_newest, owned_alone, replace_privately

FORMAT = 2  # of the kept file; a file of another format (or pandas version, or index fingerprint) is rebuilt
NO_SIGNATURE = -9  # a row kept without a signature: no run's stat matches it, so it is read again
USED: Counter = Counter()  # how each collect got its table: kept, patched or built (tests count)
_EXEMPLARS = {int: 1, float: 1.5, str: "x", bool: True, type(None): None, list: [], dict: {}}


class Kinds:
    """Each cell's kind per column (an int16 code a cell; `table`: (type, missing) -> code)."""

    def __init__(self, table: dict | None = None):
        self.table: dict[tuple[type, bool], int] = dict(table or {})
        self.codes: dict[str, np.ndarray] = {}

    def of(self, values: np.ndarray) -> np.ndarray:
        """The kinds of an object array's cells."""
        missing = pd.isna(values)
        types = np.empty(len(values), dtype=object)
        types[:] = list(map(type, values))
        out = np.empty(len(values), dtype=np.int16)
        for kind in set(types.tolist()):
            is_kind = types == kind
            for flag in (False, True):
                where = is_kind & (missing == flag)
                if where.any():
                    out[where] = self.table.setdefault((kind, flag), len(self.table))
        return out

    def add(self, key: str, values: np.ndarray) -> None:
        self.codes[key] = self.of(values)

    def dtype(self, codes: np.ndarray) -> object | None:
        """The dtype pd.DataFrame(rows) gives a column whose cells are of these kinds (None: not known)."""
        back = {code: kind for kind, code in self.table.items()}
        return _typed(frozenset(back[c] for c in np.flatnonzero(np.bincount(codes)).tolist()))


@functools.cache
def _typed(kinds: frozenset) -> object | None:
    """The dtype pd.DataFrame(rows) gives a column of one exemplar cell per kind (a memo: a few sets)."""
    cells = []
    for kind, missing in sorted(kinds, key=lambda k: (k[0].__name__, k[1])):
        if kind not in _EXEMPLARS:
            return None
        cells.append(np.nan if missing and kind is float else _EXEMPLARS[kind])
    return pd.DataFrame({"k": cells})["k"].dtype if cells else None


def _path(snapshots: list) -> Path:
    key = hashlib.sha256("\0".join(s.sweep for s in snapshots).encode()).hexdigest()[:16]
    return Path(snapshots[0].dir) / f"collect-{key}.pkl"


def _signatures(snapshots: list) -> np.ndarray:
    from petsweep.records.index import SIG_FIELDS

    rows = [sig for s in snapshots for sig in s.runs.values()]
    return np.array(rows, dtype=np.int64).reshape(-1, len(SIG_FIELDS))


def _unsigned(sigs: np.ndarray, sources) -> np.ndarray:
    """Rows not to trust next time: read in the clock tick of a write, or from a W&B summary."""
    from petsweep.records import index

    newest = sigs[:, [0, 1, 4, 6]].max(axis=1) / 1e9 if len(sigs) else np.zeros(0)
    racy = time.time() - newest < index.RACY_S
    wandb = np.asarray(sources == "wandb", dtype=bool) if sources is not None else False
    return racy | wandb


def keep(snapshots: list, frame: pd.DataFrame, layout: np.ndarray, layouts: list, kinds: Kinds) -> None:
    """Keep the table a collect built (load._frame) for the next collect of these sweeps (never raises)."""
    from petsweep.records import index

    if not snapshots or not len(frame.columns):
        return
    sigs = _signatures(snapshots)
    sigs[_unsigned(sigs, frame["source"] if "source" in frame else None)] = NO_SIGNATURE
    kept = {
        "format": FORMAT,
        "pandas": pd.__version__,
        "fingerprint": index.fingerprint(),
        "sweeps": [s.sweep for s in snapshots],
        "names": [list(s.runs) for s in snapshots],
        "sigs": sigs,
        "layout": layout,
        "layouts": layouts,
        "kinds": kinds.table,
        "codes": kinds.codes,
        "frame": _packed(frame),
    }
    path = _path(snapshots)
    try:
        os.makedirs(path.parent, exist_ok=True)
        # created anew, never through a planted link (R37 W4), never writable by others (owned_alone)
        replace_privately(path, lambda fh: pickle.dump(kept, fh, protocol=5))
        # R37 F10: each path a sweep was collected by (relative, absolute, through a link, with other sweeps)
        # kept a whole table for ever, ~650 MB each at 10^6 runs; an evicted one costs a collect a build
        keep_newest(path.parent, "collect-*.pkl", KEPT_PER_SWEEP)
    except Exception as err:  # noqa: BLE001 (a cache: the table was already built)
        index.log.debug("petsweep: collect of %s not kept: %s", snapshots[0].sweep, err)


KEPT_PER_SWEEP = 3  # kept tables in one .index (each ~0.65 KB a run): one per set of sweep paths collected


def _load(snapshots: list) -> dict | None:
    from petsweep.records import index

    try:
        with open(_path(snapshots), "rb") as fh:
            if not owned_alone(os.fstat(fh.fileno())):  # unpickling runs whatever code a file names
                return None
            kept = pickle.load(fh)
    except Exception:  # noqa: BLE001 (none, unreadable, or of other code: built anew)
        return None
    if not isinstance(kept, dict):
        return None  # R37 F5: another pickle (it crashed collect)
    same = (kept.get("format"), kept.get("pandas"), kept.get("fingerprint"), kept.get("sweeps"))
    if same != (FORMAT, pd.__version__, index.fingerprint(), [s.sweep for s in snapshots]):
        return None
    try:
        kept["frame"] = _unpacked(kept["frame"])
    except Exception:  # noqa: BLE001 (not what _packed wrote: built anew)
        return None
    return kept


def _packed(frame: pd.DataFrame) -> tuple:
    """The table with each object column as (codes, its distinct cells): pickling 10^5 Python objects a
    column was most of keeping and loading the table (#25: 16 object columns, 1.1 of 1.5 s at 10^5 runs).
    Cells are told apart by identity, as pickle's memo tells them, so the cells shared (a list decoded once
    for many runs) are shared again when unpacked, as pickle would give them back."""
    objects = {}
    for column in frame.columns[frame.dtypes == object]:  # noqa: E721 (a pandas dtype comparison)
        cells = frame[column].to_numpy()
        ids = np.fromiter(map(id, cells), dtype=np.uint64, count=len(cells))
        _, first, codes = np.unique(ids, return_index=True, return_inverse=True)
        objects[column] = (codes.astype(np.int32), cells[first])
    return list(frame.columns), frame.drop(columns=list(objects)), objects


def _unpacked(packed: tuple) -> pd.DataFrame:
    columns, frame, objects = packed
    for column, (codes, cells) in objects.items():
        frame[column] = pd.Series(cells[codes], index=frame.index, dtype=object)
    return frame[columns]


def patched(snapshots: list) -> pd.DataFrame | None:
    """The table load._frame would build for these snapshots, from the kept one and the runs changed since;
    None where nothing is kept or a patch would not give the same table (collect builds it anew)."""
    kept = _load(snapshots) if snapshots else None
    if kept is None:
        USED["built"] += 1
        return None
    frame, old_sigs = kept["frame"], kept["sigs"]
    sigs = _signatures(snapshots)
    names = [list(s.runs) for s in snapshots]
    if names == kept["names"]:
        pos = np.arange(len(sigs))
    else:
        at = {(k, n): i for k, sweep in enumerate(kept["names"]) for i, n in enumerate(sweep)}
        offsets = np.cumsum([0, *map(len, kept["names"])])
        pos = np.array(
            [offsets[k] + at[(k, n)] if (k, n) in at else -1 for k, ns in enumerate(names) for n in ns],
            dtype=np.int64,
        )
    same = (pos >= 0) & (old_sigs[np.maximum(pos, 0)] == sigs).all(axis=1) if len(pos) else pos >= 0
    if same.all() and np.array_equal(pos, np.arange(len(frame))):
        USED["kept"] += 1
        with contextlib.suppress(OSError):
            os.utime(_path(snapshots), follow_symlinks=False)  # used: the newest are kept (keep_newest)
        return frame
    got = _patch(kept, snapshots, names, pos, same)
    if got is None:
        USED["built"] += 1
        return None
    USED["patched"] += 1
    table, layout, layouts, kinds = got
    keep(snapshots, table, layout, layouts, kinds)
    return table


def _new_rows(snapshots: list, names: list, same: np.ndarray) -> list[dict]:
    rows, at = [], 0
    for snapshot, sweep in zip(snapshots, names):
        changed = [n for n, ok in zip(sweep, same[at : at + len(sweep)]) if not ok]
        rows += snapshot.rows_of(changed)
        at += len(sweep)
    return rows


def _patch(kept, snapshots, names, pos, same) -> tuple | None:
    """The patched table, each row's layout, the layouts and the cells' kinds; None: build it anew."""
    frame, kinds = kept["frame"], Kinds(kept["kinds"])
    rows = _new_rows(snapshots, names, same)
    layouts = {layout: i for i, layout in enumerate(kept["layouts"])}
    new_layout = np.array([layouts.setdefault(tuple(r), len(layouts)) for r in rows], dtype=np.int32)
    layout = kept["layout"][np.maximum(pos, 0)]
    layout[~same] = new_layout
    order = list(layouts)
    used, first = np.unique(layout[layout >= 0], return_index=True)
    keys = list(dict.fromkeys(k for i in used[np.argsort(first)] for k in order[i]))
    if set(keys) != set(frame.columns) or len(keys) != len(frame.columns):
        return None  # a column appears or goes: its place and type are the new rows' to decide
    new, codes = {}, {}
    for key in keys:
        values = np.empty(len(rows), dtype=object)
        for i, row in enumerate(rows):
            values[i] = row.get(key, np.nan)  # a key a row lacks is NaN, as pd.DataFrame(rows) has it
        column = kept["codes"][key][np.maximum(pos, 0)]
        column[~same] = kinds.of(values)
        dtype = frame[key].dtype
        if kinds.dtype(kept["codes"][key]) != dtype or kinds.dtype(column) != dtype:
            return None  # the column would be typed otherwise (or its typing is not known here)
        try:
            new[key] = pd.Series(values, dtype=dtype)
        except (ValueError, TypeError, OverflowError):
            return None
        codes[key] = column
    kinds.codes = codes
    if np.array_equal(pos, np.arange(len(frame))) and keys == list(frame.columns):
        return _in_place(frame, np.flatnonzero(~same), new), layout, list(layouts), kinds
    source = np.where(same, pos, 0)
    source[~same] = len(frame) + np.arange(int((~same).sum()))
    both = pd.concat([frame, pd.DataFrame(new, columns=list(frame.columns))], ignore_index=True)
    table = both.take(source).reset_index(drop=True)[keys]
    return table, layout, list(layouts), kinds


def _in_place(frame: pd.DataFrame, changed: np.ndarray, new: dict) -> pd.DataFrame:
    """The kept table with the rows at `changed` set to the new cells (each column already of its dtype):
    the same runs in the same order and columns, the usual re-collect, so the table is not copied (#25: a
    concat and a take held it three times at once, +0.24 GB at 10^5 runs)."""
    for at, key in enumerate(frame.columns):
        cells = new[key].to_numpy(dtype=object) if frame[key].dtype == object else new[key].array
        frame.iloc[changed, at] = cells
    return frame
