"""From sweep directories to one tidy table: a row per run, config columns, metrics, counts, cost, status.

Method, budget and granularity are columns, never code paths, so runs of methods added later flow in.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from petsweep.records.row import run_row as _row_of
from petsweep.records.status import RunDir, find_runs
from petsweep.spec.errors import PetsweepError

REQUIRED = ("run_id", "backbone", "method", "task", "seed", "status", "score", "trainable_params")


def run_row(run_dir: Path) -> dict:
    """One run as a flat dict (petsweep.records.row.run_row: the row a finished run also writes into its
    sweep index line, built on the records floor so the run can build it)."""
    return _row_of(RunDir(run_dir))


def collect(sweep_dirs: list[str | Path], quick: bool = False) -> pd.DataFrame:
    """Every run under the given sweep dirs; a run id seen twice keeps its newest record. Rows come from
    each sweep's index (petsweep.records.index) where it holds them for the runs' files as they are now; the
    rest are read from the files (a re-collect reads only what changed), and the index learns them.
    `quick`: no run dir is stat'ed where a sweep's index can answer: the runs changed since are those its
    lines name (index.Snapshot's `quick`), so an edit in place or a run written without the index is not seen.
    Equal list cells (a config's targets, say) may be one object, decoded once: copy a cell before changing
    it in place.

    Raises:
        PetsweepError: a directory that holds no petsweep runs.
    """
    from petsweep.records import index

    if not index.enabled():
        rows = []
        for sweep in sweep_dirs:
            rows += [run_row(d) for d in find_runs(sweep)]
        table = _finish(pd.DataFrame(rows))
        if quick:  # no index to answer (PETSWEEP_INDEX=0): every run's files were read
            _quick_note(table, [str(Path(s)) for s in sweep_dirs], len(sweep_dirs))
        return table
    from analysis import collected

    snapshots = [snapshot for sweep in sweep_dirs for snapshot in _snapshots(Path(sweep), quick)]
    table = collected.patched(snapshots)  # the last collect's table and the runs changed since
    if table is None:
        blocks = [snapshot.row_columns() for snapshot in snapshots]
        kinds = collected.Kinds()
        layout, layouts = _layouts(blocks)
        table = _frame(blocks, kinds)
        collected.keep(snapshots, table, layout, layouts, kinds)
    for snapshot in snapshots:
        snapshot.finish()
    table = _finish(table)
    if quick:  # the sweeps whose index could not answer alone (their runs were stat'ed)
        _quick_note(table, [snapshot.sweep for snapshot in snapshots if not snapshot.quick], len(snapshots))
    return table


def _quick_note(table: pd.DataFrame, fell_back: list[str], sweeps: int) -> None:
    """What `collect --quick`'s note says (cli.quick_note): the sweeps, of how many, that the index could not
    answer alone, so their runs' files were read or stat'ed."""
    table.attrs.update(quick_fell_back=fell_back, quick_sweeps=sweeps)


def _frame(blocks: list, kinds=None) -> pd.DataFrame:
    """The rows of index.RowBlocks (one per sweep, in order) as pd.DataFrame(rows) builds them from dicts:
    columns in its order, each typed by one inference over the whole column (#25: without a dict per run).
    `kinds` (collected.Kinds): gets each cell's kind, for the next collect's patch."""
    import numpy as np

    events, offset = [], 0
    for block in blocks:
        events += [(offset + at, keys) for at, keys in block.events]
        offset += block.n
    keys = list(dict.fromkeys(k for _, ks in sorted(events, key=lambda e: e[0]) for k in ks))
    columns = {}
    for key in keys:
        parts = [b.columns.get(key) for b in blocks]
        parts = [p if p is not None else np.full(b.n, np.nan, dtype=object) for p, b in zip(parts, blocks)]
        values = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if kinds is not None:
            kinds.add(key, values)
        columns[key] = pd.DataFrame({key: values.tolist()})[key]  # the column as pd.DataFrame(rows) types it
        for block in blocks:
            block.columns.pop(key, None)
    if not columns:
        return pd.DataFrame(index=range(offset))
    return pd.DataFrame(columns)


def _layouts(blocks: list) -> tuple:
    """Each row's layout number over the blocks (-1: none), and the layouts (keys in order) by number."""
    import numpy as np

    numbers: dict[tuple, int] = {}
    parts = []
    for block in blocks:
        mine = {i: numbers.setdefault(keys, len(numbers)) for keys, i in block.layouts.items()}
        lookup = np.array([mine[i] for i in range(len(mine))] + [-1], dtype=np.int32)
        parts.append(lookup[block.layout])  # -1 indexes the last: none
    layout = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return layout, list(numbers)


def _cached_row(run_dir: str) -> tuple[dict, bool]:
    """A run's row for the index, and whether it may be kept (a W&B summary may still change)."""
    row = run_row(Path(run_dir))
    return row, row.get("source") != "wandb"


def _snapshots(sweep: Path, quick: bool = False) -> list:
    """The index snapshots of a sweep dir, or of each sweep under a runs root (as find_runs finds runs)."""
    from petsweep.records.index import Snapshot

    found = Snapshot(sweep, compute={"row": _cached_row}, quick=quick) if sweep.is_dir() else None
    if found is not None and found.runs:
        return [found]
    nested = []
    if sweep.is_dir():
        for sub in sorted(p for p in sweep.iterdir() if not p.name.startswith(".") and p.is_dir()):
            snapshot = Snapshot(sub, compute={"row": _cached_row}, quick=quick)
            if snapshot.runs:
                nested.append(snapshot)
    return nested or [find_runs(sweep)]  # none: find_runs raises its one clear error


def _finish(table: pd.DataFrame) -> pd.DataFrame:
    """`updated` as UTC times; the runs with an id by `updated`, a run id seen twice keeping its newest row
    (the last in that order), then the runs without one. The order is found on those two columns and the
    table taken once (#25: a sort, a drop and a concat copied the whole table three times: +0.18 GB at 10^5
    runs); the rows and their order are what `table[has_id].sort_values("updated").drop_duplicates("run_id",
    keep="last")` then the rows without an id, concatenated, give (tests/test_analysis.py)."""
    import numpy as np

    table["updated"] = pd.to_datetime(table["updated"], unit="s", utc=True)
    has_id = table["run_id"].notna().to_numpy()
    with_id = np.flatnonzero(has_id)
    updated = table["updated"].iloc[with_id].reset_index(drop=True)
    by_time = with_id[updated.sort_values().index.to_numpy()]  # (DataFrame.sort_values's sort: nargsort)
    newest = ~table["run_id"].iloc[by_time].duplicated(keep="last").to_numpy()
    return table.take(np.concatenate([by_time[newest], np.flatnonzero(~has_id)])).reset_index(drop=True)


HISTORY_KEYS = ("run_id", "backbone", "method", "task", "seed", "trainable_params", "status")


def history(sweep_dirs: list[str | Path]) -> pd.DataFrame:
    """Every logged evaluation of every run (metrics.jsonl): a row per (run, step) with train_loss, lr and
    the dev metrics, beside the run's identity columns (join on run_dir with the run table for more)."""
    rows = []
    for sweep in sweep_dirs:
        for run_dir in find_runs(sweep):
            metrics = run_dir / "metrics.jsonl"
            if not metrics.exists():
                continue
            who = run_row(run_dir)
            ident = {k: who.get(k) for k in HISTORY_KEYS} | {"run_dir": str(run_dir)}
            lines = metrics.read_text().splitlines()
            rows += [{**ident, **_wandb_names(json.loads(line))} for line in lines if line.strip()]
    return pd.DataFrame(rows, columns=None if rows else [*HISTORY_KEYS, "run_dir", "step"])


def _wandb_names(row: dict) -> dict:
    """A metrics.jsonl row under W&B's history names: train/loss, train/lr, eval/<metric> (the dev split)."""
    names = {"train_loss": "train/loss", "lr": "train/lr"}
    return {
        names.get(k, f"eval/{k.removeprefix('dev_')}" if k.startswith("dev_") else k): v
        for k, v in row.items()
    }


def check_columns(table: pd.DataFrame, needed=REQUIRED) -> None:
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise PetsweepError(f"table lacks column(s) {missing}; tables from `petsweep collect` have them")


def save(table: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix == ".parquet":
        _write_parquet(_uniform_types(table), path)
    elif path.suffix == ".csv":  # a list cell as its JSON, read back as a list by load()
        table.map(lambda v: json.dumps(v) if isinstance(v, list) else v).to_csv(path, index=False)
    else:
        raise PetsweepError(f"-o {path}: unknown table format; use .parquet or .csv")
    return path


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    """The table as parquet; a column parquet cannot type or write (lists mixing types inside, review V:
    `[1, "x"]`; an empty dict, review W: a struct with no field) as each cell's JSON text (load() reads a
    column of lists back as lists; dicts stay text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table.to_parquet(path, index=False)
        return
    except pa.ArrowException:
        pass
    table = table.copy(deep=False)
    for column in table.columns[table.dtypes == object]:  # noqa: E721 (a pandas dtype comparison)
        try:
            pq.write_table(pa.table({column: pa.array(table[column], from_pandas=True)}), io.BytesIO())
        except pa.ArrowException:
            table[column] = table[column].map(_as_json)
    table.to_parquet(path, index=False)


def _as_json(cell):
    if isinstance(cell, list | dict):
        return json.dumps(cell, default=str)
    return _as_text(cell)


def _uniform_types(table: pd.DataFrame) -> pd.DataFrame:
    """Parquet needs one type per column: a config column mixing types (e.g. int and str) becomes str."""
    table = table.copy(deep=False)  # copy-on-write: a column replaced here leaves the caller's table as it is
    for column in table.columns[table.dtypes == object]:  # noqa: E721 (a pandas dtype comparison)
        kinds = set(map(type, table[column].dropna().to_numpy()))
        if len(kinds) > 1:
            table[column] = table[column].map(_as_text)
    return table


def _as_text(cell):
    """A cell of a column mixing types, for parquet: missing stays missing, the rest its str (a list cell
    too: pd.isna of a list is an array, which crashed save: R39 W7)."""
    if cell is None or (isinstance(cell, float) and cell != cell):
        return cell
    return str(cell)


def load(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise PetsweepError(f"{path}: no such table")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    check_columns(table)
    return _lists(table)


def _lists(table: pd.DataFrame) -> pd.DataFrame:
    """List cells back as lists: parquet reads them as numpy arrays, CSV as their JSON text."""
    import numpy as np

    for column in table.columns:
        if pd.api.types.is_numeric_dtype(table[column]) or pd.api.types.is_bool_dtype(table[column]):
            continue
        values = table[column].dropna()
        if values.map(lambda v: isinstance(v, np.ndarray)).any():
            table[column] = table[column].map(lambda v: v.tolist() if isinstance(v, np.ndarray) else v)
        elif len(values) and values.map(lambda v: isinstance(v, str) and v[:1] + v[-1:] == "[]").all():
            try:
                table[column] = (
                    table[column].astype(object).map(lambda v: json.loads(v) if isinstance(v, str) else v)
                )
            except ValueError:
                pass  # text that only looks like a list
    return table
