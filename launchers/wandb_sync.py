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
from petsweep.records.status import State

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


TIMED_OUT = 124  # the code of an upload stopped at its timeout (as timeout(1) reports it)


def sync_one(folder: Path, dry_run: bool, timeout_s: float | None = None) -> tuple[Path, int, str]:
    """`wandb sync` of one offline run, stopped after `timeout_s` (without a network it waits for good);
    returns the folder, the exit code and what wandb printed."""
    command = [_wandb(), "sync", *(["--dry-run"] if dry_run else []), str(folder)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        printed = _text(err.stdout) + _text(err.stderr)
        return folder, TIMED_OUT, f"{printed.strip()}\nno answer within {timeout_s:g} s (is W&B reachable?)"
    if out.returncode == 0 and not dry_run:
        (folder / MARKER).touch()
    return folder, out.returncode, (out.stdout + out.stderr).strip()


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def last_lines(output: str, n: int = 2) -> list[str]:
    """wandb's own last words on a failed upload (its error, not a bare exit code)."""
    return [line.strip() for line in output.splitlines() if line.strip()][-n:]


def sync(
    sweep_dir: Path, parallel: int = 4, dry_run: bool = False, timeout_s: float | None = 120
) -> list[tuple[Path, int, str]]:
    folders = offline_runs(Path(sweep_dir))
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda f: sync_one(f, dry_run, timeout_s), folders))
