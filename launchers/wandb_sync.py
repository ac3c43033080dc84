"""`petsweep sync`: upload the offline W&B runs of finished runs, several at a time, each once.

Runs still queued, running or failed are left alone (an unfinished run uploaded now would be uploaded
again, half-finished, later). A synced run gets a marker so that the next sync skips it.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from launchers.planning import run_status
from launchers.report import sweep_runs
from petsweep.status import State

MARKER = ".petsweep-synced"


def offline_runs(sweep_dir: Path) -> list[Path]:
    """The W&B offline run folders of the sweep's COMPLETED runs that were not synced yet."""
    found = []
    for run in sweep_runs(sweep_dir):
        if run_status(run.path) != State.COMPLETED:
            continue
        found += [p for p in sorted((run.path / "wandb").glob("offline-run-*")) if not (p / MARKER).exists()]
    return found


def _wandb() -> str:
    return str(Path(sys.executable).with_name("wandb"))


def sync_one(folder: Path, dry_run: bool) -> tuple[Path, int, str]:
    command = [_wandb(), "sync", *(["--dry-run"] if dry_run else []), str(folder)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode == 0 and not dry_run:
        (folder / MARKER).touch()
    return folder, out.returncode, (out.stdout + out.stderr).strip()


def sync(sweep_dir: Path, parallel: int = 4, dry_run: bool = False) -> list[tuple[Path, int, str]]:
    folders = offline_runs(Path(sweep_dir))
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda f: sync_one(f, dry_run), folders))
