"""A run directory on disk: its status marker, record files and their atomic writes.

Layout: config.yaml, status.json (RUNNING / COMPLETED / FAILED / CANCELLED), result.json, provenance.json,
metrics.jsonl, train.log, error.txt (on failure), checkpoints/.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from petsweep.errors import PetsweepError

RUNNING, COMPLETED, FAILED, CANCELLED = "RUNNING", "COMPLETED", "FAILED", "CANCELLED"
QUEUED = "QUEUED"  # submitted to a cluster, not started yet


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDir:
    """One run's directory; every write to its records goes through here."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.status_file = self.path / "status.json"
        self.result_file = self.path / "result.json"
        self.metrics_file = self.path / "metrics.jsonl"
        self.checkpoints = self.path / "checkpoints"

    def status(self) -> dict | None:
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def state(self) -> str | None:
        status = self.status()
        return status["state"] if status else None

    def is_live(self) -> bool:
        """RUNNING and its process still alive on this host (another process owns the run)."""
        status = self.status()
        return bool(status and status["state"] == RUNNING and status.get("host") == socket.gethostname()
                    and status.get("pid") != os.getpid() and _pid_alive(status.get("pid", -1)))

    def set_status(self, state: str, **extra) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.status_file, {"state": state, "host": socket.gethostname(), "pid": os.getpid(),
                                      "updated": time.time(), **extra})

    def result(self) -> dict | None:
        try:
            return json.loads(self.result_file.read_text())
        except FileNotFoundError:
            return None

    def append_metrics(self, row: dict) -> None:
        with self.metrics_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


def find_runs(sweep_dir: str | Path) -> list[Path]:
    """The run directories (those with a status.json) of a sweep dir, sorted; none is one clear error."""
    sweep = Path(sweep_dir)
    found = sorted(p.parent for p in sweep.glob("*/status.json")) if sweep.is_dir() else []
    if not found:
        raise PetsweepError(f"{sweep} holds no petsweep runs (no <run dir>/status.json); give <runs_root>/<sweep>")
    return found
