"""`petsweep invalidate`: redo runs after a code fix.

A run's identity is its config, so a fixed sweep would skip every COMPLETED run. Invalidating moves the
chosen runs' directories aside, under `<sweep>/.invalidated/<time>/`, with why; the next launch of the same
sweep runs them again from scratch, and each new run's provenance.json lists the attempts it replaces.
Nothing is deleted, and runs that are queued or running are never touched: each run is moved under its claim
lock (petsweep.records.status), after checking again that no live process has claimed it meanwhile.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

from launchers.planning import run_status
from launchers.report import sweep_runs
from petsweep.records.status import RunDir, State, new_aside_batch, write_json
from petsweep.run.rehash import recorded_config
from petsweep.spec.errors import ConfigError

STATES = ("completed", "failed", "cancelled", "interrupted", "all")


def _config(run: RunDir) -> dict:
    return recorded_config(run)  # a finished run by what it trained, not an edited config.yaml


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")  # what YAML 1.1 leaves a string: 1e-3


def as_value(text):
    """A --where value or a config value as a value: YAML's reading (lists, booleans, null), with numbers as
    numbers the way OmegaConf and Hydra read them (`1e-3` is 0.001, which YAML 1.1 leaves a string)."""
    import yaml

    value = yaml.safe_load(text) if isinstance(text, str) else text
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return value


_MISSING = object()


def _lookup(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _keys(node, prefix: str = "") -> set[str]:
    """Every dotted key of a config, its inner nodes included."""
    keys = set()
    if isinstance(node, dict):
        for name, value in node.items():
            key = f"{prefix}{name}"
            keys |= {key} | _keys(value, key + ".")
    return keys


def _matches(config: dict, where: list[tuple[str, str]]) -> bool:
    """Every `key=value` holds in the run's resolved config, compared as values (0.001 == 1e-3 == 1.0e-3)."""
    for key, wanted in where:
        node = _lookup(config, key)
        if node is _MISSING or as_value(node) != as_value(wanted):
            return False
    return True


def _check_keys(configs: list[dict], where: list[tuple[str, str]]) -> None:
    """A --where key that no run of the sweep has is a typo, not an empty selection: one line with the keys
    it is close to."""
    if configs:
        _check_known(set().union(*(_keys(c) for c in configs)), where)


def _check_known(known: set[str], where: list[tuple[str, str]]) -> None:
    import difflib

    for key, value in where:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else "see a run's config.yaml for its keys"
            raise ConfigError("--where", f"{key}={value}", f"no run of the sweep has the key {key}; {hint}")


def parse_where(terms: list[str]) -> list[tuple[str, str]]:
    parsed = []
    for term in terms:
        key, sep, value = term.partition("=")
        if not sep or not key:
            raise ConfigError("--where", term, "give key=value, a key of the run's config (method.lr=0.001)")
        parsed.append((key, value))
    return parsed


def _chosen(run: RunDir, state: str) -> bool:
    current = run_status(run.path)
    if current in (State.RUNNING, State.QUEUED):
        return False
    return state == "all" or current == State(state.upper())


def _indexed_choice(sweep_dir: Path, where: list[tuple[str, str]], state: str) -> list[RunDir] | None:
    """The runs to move, found through the sweep's index (petsweep.records.index: states and recorded configs
    where it holds them for the runs' files as they are, else read from the files); None: not indexed.
    Each chosen run is checked again from its files under its lock before it moves."""
    from launchers.planning import read_info  # the full identity check (budget= runs: the solver)
    from launchers.report import indexed_state
    from petsweep.records import index

    if not index.enabled() or not Path(sweep_dir).is_dir():
        return None
    recorded = {"config": lambda path: (_config(RunDir(Path(path))), True)}
    snapshot = index.Snapshot(sweep_dir, compute=recorded, read_info=read_info)
    if not snapshot.runs:
        return None
    known: set[str] = set()
    chosen = []
    for name, config in snapshot.iter_field("config"):
        if not all(key in known for key, _ in where):  # all keys only for the one-line error's hint
            known |= _keys(config)
        path = Path(sweep_dir) / name
        current = indexed_state(snapshot.info[name], str(path), None)
        if current is None:
            current = run_status(path)
        if current in (State.RUNNING, State.QUEUED) or not (
            state == "all" or current == State(state.upper())
        ):
            continue
        if _matches(config, where):
            chosen.append(RunDir(path))
    snapshot.finish()
    _check_known(known, where)  # the sweep has runs: a key none of them has is a typo
    return chosen


def invalidate(
    sweep_dir: Path, where: list[str], state: str = "all", reason: str = "", dry_run: bool = False
) -> list[Path]:
    """Move the matching finished (or failed, cancelled, interrupted) runs aside; returns their old paths."""
    if state not in STATES:
        raise ConfigError("--state", state, f"choose one of: {', '.join(STATES)}")
    conditions = parse_where(where)
    chosen = _indexed_choice(Path(sweep_dir), conditions, state)
    if chosen is None:
        runs = sweep_runs(sweep_dir)
        configs = {run.path: _config(run) for run in runs}
        _check_keys(list(configs.values()), conditions)
        chosen = [run for run in runs if _chosen(run, state) and _matches(configs[run.path], conditions)]
    if dry_run or not chosen:
        return [run.path for run in chosen]
    batch = new_aside_batch(Path(sweep_dir))
    moved = []
    for run in chosen:
        with run.locked():  # a sweep claiming the run now waits, and one that claimed it first keeps it
            if run.status() is None or not _chosen(run, state):  # moved or claimed meanwhile
                continue
            run.path.rename(batch / run.path.name)
            moved.append(run.path)
    if not moved:  # every run was claimed meanwhile
        with contextlib.suppress(OSError):
            batch.rmdir()
        return moved
    chosen = moved
    write_json(
        batch / "invalidated.json",
        {
            "when": time.time(),
            "reason": reason,
            "where": where,
            "state": state,
            "runs": [p.name for p in chosen],
        },
    )
    return chosen
