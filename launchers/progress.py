"""A sweep you can watch: one line per finished run, with its score or its one-line error, and the sweep's
count and ETA, printed as each run ends (from the run's own files, never from its exit code alone)."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

from petsweep.records.record import notes
from petsweep.records.status import RunDir
from petsweep.run.spawn import exit_text
from petsweep.spec.errors import EXIT_CANCELLED, EXIT_INTERRUPTED


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _one_line(text: str, width: int = 160) -> str:
    """The error on one line. A long one names its files by their last two parts, then loses its middle:
    never its first clause ("cannot write ...: No space left on device") nor its end."""
    line = " ".join(text.split())
    if len(line) > width:
        line = _LONG_PATH.sub(lambda m: "…/" + "/".join(Path(m.group(0)).parts[-2:]), line)
    if len(line) <= width:
        return line
    head = min(max(width // 2, line.find("; ") + 2), width - 20)
    return line[:head] + "…" + line[len(line) - (width - head - 1) :]


_LONG_PATH = re.compile(r"/[^\s:;,'\"]*(?:/[^\s:;,'\"]*){3,}")  # an absolute path of four parts or more


def outcome(run_path: Path | None, code: int, log: Path | None) -> str:
    """What a finished run came to: `COMPLETED accuracy 0.9300` (with what its record warns of:
    `COMPLETED accuracy 0.2050 (PET parameters did not move)`), or its state and one-line error."""
    run = RunDir(run_path) if run_path is not None else None
    result = run.result() if run is not None else None
    noted = "".join(f" ({note})" for note in notes(result))  # PET parameters did not move
    if result is not None and code == 0:
        return f"COMPLETED {result['metric']} {result['score']:.4f}{noted}"
    status = (run.status() if run is not None else None) or {}
    if not status and code < 0:  # its worker died (a signal) before it claimed the run: nothing of it ran
        return f"NOT STARTED: its worker was {exit_text(code)} first; run the same command again"
    if not status and code in (EXIT_CANCELLED, EXIT_INTERRUPTED):  # a group stopped before claiming it
        return "NOT STARTED: the sweep was stopped first; run the same command again"
    error = status.get("error") or _last_error_line(log, run_path) or _disk_note(run_path) or f"exit {code}"
    if error.endswith("not started twice"):
        # another sweep (or cluster job) claimed it first: trained there, not failed here; it may have
        # finished by now
        where = error.rsplit("(", 1)[-1].split(")", 1)[0]
        if result is not None and status.get("state") == "COMPLETED":
            return f"COMPLETED elsewhere ({where}): {result['metric']} {result['score']:.4f}{noted}"
        if status.get("state") in ("RUNNING", "QUEUED"):
            return f"{status['state']} elsewhere ({where}): left to it"
    state = status.get("state") or "FAILED"
    if state in ("RUNNING", "QUEUED"):  # its process ended without recording an end (a full disk): resumed
        state = "INTERRUPTED"
    return f"{state}: {_one_line(error)}"


def _disk_note(run_path: Path | None) -> str | None:
    """Why a run that left no error line (its log on the same disk) may have ended: its disk is full or
    read-only."""
    if run_path is None:
        return None
    where = next((p for p in (Path(run_path), *Path(run_path).parents) if p.exists()), None)
    try:
        fs = os.statvfs(where)
    except (OSError, TypeError):
        return None
    if fs.f_flag & os.ST_RDONLY:
        return f"{where} is on a read-only file system"
    if fs.f_bavail == 0:
        return f"no space left on the device of {where}"
    return None


def _last_error_line(log: Path | None, run_path: Path | None = None) -> str | None:
    """The `error:` line petsweep printed, else the last line of a traceback, from a run's launcher log (a
    fused group's log is shared: a line that names the run first, never another member's)."""
    if log is None or not log.exists():
        return None
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    if run_path is not None:
        mine = [x for x in lines if x.startswith("error: ") and Path(run_path).name in x]
        if mine:  # `error: run <path> FAILED: <what>`: the sweep's line names the run and state itself
            line = mine[-1].removeprefix("error: ")
            own = re.match(rf"run \S*{re.escape(Path(run_path).name)} [A-Z]+: (.*)", line)
            return own[1] if own else line
        lines = [x for x in lines if not _names_another_run(x, Path(run_path).name)]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return lines[-1] if lines else None


def _names_another_run(line: str, name: str) -> bool:
    """A fused group's `error: run <path> FAILED: ...` line of another member (the group's log is shared)."""
    found = re.match(r"error: run (\S+) [A-Z]+: ", line)
    return found is not None and Path(found[1]).name != name


class SweepProgress:
    """Counts runs as they finish and prints `[k/N] <run> <outcome> in <time> · ETA <time>`."""

    def __init__(self, total: int, print_fn=print):
        self.total, self.done, self.started = total, 0, time.time()
        self._print, self._lock = print_fn, threading.Lock()

    def finished(self, name: str, result: str, seconds: float) -> None:
        with self._lock:
            self.done += 1
            elapsed = time.time() - self.started
            left = self.total - self.done
            eta = f" · ETA {_duration(elapsed / self.done * left)}" if left else ""
            self._print(
                f"[{self.done}/{self.total}] {name} {result} in {_duration(seconds)}{eta}", flush=True
            )
