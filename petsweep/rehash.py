"""`petsweep rehash`: move run dirs written under an older identity rule to the names the current rule gives.

A run dir is `<slug>-<hash12>` of its config. When the identity rule changes (say, backbone.resources stops
counting), a finished run would no longer be found under its config and would be trained again. Rehashing
reads each run's own config.yaml, computes its id under the current rule and renames the dir in place
(same sweep dir), so re-running the sweep finds it. result.json gets the new run_id and config, and keeps
the ids it had before (`previous_run_ids`); nothing else is rewritten. A run whose new name is already taken
is reported and left where it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from petsweep.identity import run_hash, run_slug, semantic_config
from petsweep.status import INVALIDATED_DIR, RunDir, write_json


def run_dirs_under(root: Path) -> list[Path]:
    """Every run dir (a dir holding status.json and config.yaml) at or below `root`."""
    root = Path(root)
    return sorted(
        p.parent
        for p in root.rglob("status.json")
        if (p.parent / "config.yaml").exists() and INVALIDATED_DIR not in p.parts  # moved aside: history
    )


def rehash_run(path: Path, dry_run: bool = False) -> tuple[str, Path]:
    """Returns (what happened: same | moved | taken, the dir's current or would-be path)."""
    config = yaml.safe_load((path / "config.yaml").read_text())
    digest = run_hash(config)
    target = path.parent / f"{run_slug(config)}-{digest[:12]}"
    if target == path:
        return "same", path
    if target.exists():
        return "taken", target
    if dry_run:
        return "moved", target
    path.rename(target)
    record = RunDir(target)
    result = record.result()
    if result and result.get("run_id") != digest:
        previous = [*result.get("previous_run_ids", []), result.get("run_id")]
        write_json(
            record.result_file,
            {**result, "run_id": digest, "config": semantic_config(config), "previous_run_ids": previous},
        )
    _rename_in_marker(path.parent, path.name, target.name)
    return "moved", target


def _rename_in_marker(sweep_dir: Path, old: str, new: str) -> None:
    marker = sweep_dir / "sweep.json"
    if not marker.exists():
        return
    data = json.loads(marker.read_text())
    data["runs"] = sorted({new if name == old else name for name in data.get("runs", [])})
    write_json(marker, data)


def rehash(roots: list[str | Path], dry_run: bool = False) -> list[tuple[Path, str, Path]]:
    """Rehash every run dir under `roots`; returns (old path, what happened, new path) per run."""
    done = []
    for root in roots:
        for path in run_dirs_under(Path(root)):
            if RunDir(path).is_live():
                done.append((path, "live", path))  # a running process owns it: never move it under its feet
                continue
            outcome, target = rehash_run(path, dry_run)
            done.append((path, outcome, target))
    return done
