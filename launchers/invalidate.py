"""`petsweep invalidate`: redo runs after a code fix.

A run's identity is its config, so a fixed sweep would skip every COMPLETED run. Invalidating moves the
chosen runs' directories aside, under `<sweep>/.invalidated/<time>/`, with why; the next launch of the same
sweep runs them again from scratch, and each new run's provenance.json lists the attempts it replaces.
Nothing is deleted, and runs that are queued or running are never touched.
"""

from __future__ import annotations

import time
from pathlib import Path

from launchers.planning import run_status
from launchers.report import sweep_runs
from petsweep.errors import ConfigError
from petsweep.status import INVALIDATED_DIR, RunDir, State, write_json

STATES = ("completed", "failed", "cancelled", "interrupted", "all")


def _matches(run: RunDir, where: list[tuple[str, str]]) -> bool:
    """Every `key=value` holds in the run's resolved config (values compared as YAML reads them)."""
    import yaml

    if not where:
        return True
    config = (
        yaml.safe_load((run.path / "config.yaml").read_text()) if (run.path / "config.yaml").exists() else {}
    )
    for key, wanted in where:
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != yaml.safe_load(wanted):
            return False
    return True


def parse_where(terms: list[str]) -> list[tuple[str, str]]:
    parsed = []
    for term in terms:
        key, sep, value = term.partition("=")
        if not sep or not key:
            raise ConfigError("--where", term, "give key=value, a key of the run's config (method.lr=0.001)")
        parsed.append((key, value))
    return parsed


def invalidate(
    sweep_dir: Path, where: list[str], state: str = "all", reason: str = "", dry_run: bool = False
) -> list[Path]:
    """Move the matching finished (or failed, cancelled, interrupted) runs aside; returns their old paths."""
    if state not in STATES:
        raise ConfigError("--state", state, f"choose one of: {', '.join(STATES)}")
    conditions = parse_where(where)
    chosen = []
    for run in sweep_runs(sweep_dir):
        current = run_status(run.path)
        if current in (State.RUNNING, State.QUEUED):
            continue
        if state != "all" and current != State(state.upper()):
            continue
        if _matches(run, conditions):
            chosen.append(run.path)
    if dry_run or not chosen:
        return chosen
    batch = Path(sweep_dir) / INVALIDATED_DIR / time.strftime("%Y%m%d-%H%M%S")
    batch.mkdir(parents=True, exist_ok=True)
    for path in chosen:
        path.rename(batch / path.name)
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
