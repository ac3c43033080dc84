"""What one run used, measured from the run's own start, in a process that may have run others before it.

A warm worker runs many runs in one process: the process's high-water mark (ru_maxrss, CUDA's max allocated)
and its start time belong to every run it ran so far. `begin_run()` marks where a run starts: it resets the
kernel's RSS high-water mark (writing 5 to /proc/self/clear_refs; VmHWM then restarts from the current RSS)
and CUDA's peak statistics, and notes the time. A process started for one run (run.py, a fresh worker, a
rank child) needs no mark: its start and its command line are the run's.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

from petsweep.records import provenance

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


class RunMark:
    """Where this process's current run starts (`at`, None: the process's start), whether the kernel's RSS
    high-water mark was reset there, and the run's own overrides. Per process by nature: the high-water marks
    it resets are the process's, and a process runs one run at a time (a fused group's members are
    prepared one after another). One for the process: MARK."""

    def __init__(self):
        self.at: float | None = None
        self.hwm_reset = False
        self.overrides: list[str] | None = None


MARK = RunMark()


def begin_run(overrides: list[str] | None = None) -> None:
    """The run that starts now is measured from here (a warm worker calls it before each job); `overrides`:
    the run's own command-line overrides (the worker's argv is not the run's)."""
    MARK.at, MARK.overrides = time.time(), overrides
    try:
        _CLEAR_REFS.write_text("5")
        MARK.hwm_reset = True
    except OSError:  # not Linux, or not writable: ru_maxrss (the process's peak) is what is left
        MARK.hwm_reset = False
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def use_overrides(overrides: list[str] | None) -> None:
    """The overrides of the run prepared next in this process (a fused group's members, one after another;
    the run a fresh process of the local pool was handed, whose start-up counts from the process's start)."""
    MARK.overrides = overrides


def run_overrides() -> list[str] | None:
    """The current run's overrides: its mark's or the ones given, else this process's own command line
    (run.py's overrides); None where a mark gave none."""
    if MARK.at is None and MARK.overrides is None:
        return [a for a in sys.argv[1:] if not a.startswith("trainer.num_threads=")]
    return MARK.overrides


def run_started_at() -> float | None:
    """When the current run started: its mark, else the process's start (None where unknown)."""
    return MARK.at or provenance.process_start_time()


def peak_memory_mb(device) -> float:
    """The run's peak: CUDA's max allocated on a GPU; on the CPU the RSS high-water mark (VmHWM) since the
    mark, or the process's ru_maxrss where the mark could not reset it."""
    if device.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    if MARK.hwm_reset or MARK.at is None:
        for line in _read_status():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _read_status() -> list[str]:
    try:
        return _STATUS.read_text().splitlines()
    except OSError:
        return []
