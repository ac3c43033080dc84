"""Save-on-signal for cluster jobs: SLURM's USR2 (sent before a time limit or a preemption) is deferred to the
next step boundary, where the run writes a checkpoint and then hands the signal to submitit, which requeues
the job. A checkpoint taken mid-step would hold half-updated state; at a boundary it is exact.
"""

from __future__ import annotations

import signal

_pending: tuple | None = None  # (signum, the handler that was installed before ours)
_previous = None  # submitit's handler, for a rank 0 that agreed to stop before its own signal arrived
handed_over = False


def install() -> None:
    """Defer SIGUSR2 if someone (submitit) handles it; a no-op for plain local runs."""
    global _previous
    previous = signal.getsignal(signal.SIGUSR2)
    if not callable(previous) or getattr(previous, "defers_to_step_boundary", False):
        return  # nobody to hand over to, or an earlier run of this process (runs_per_task) installed ours
    _previous = previous

    def defer(signum, frame):
        global _pending
        _pending = (signum, previous)

    defer.defers_to_step_boundary = True

    try:
        signal.signal(signal.SIGUSR2, defer)
    except ValueError:  # not the main thread
        pass


def requested() -> bool:
    return _pending is not None


def hand_over(main: bool = True) -> None:
    """Call the deferred handler (submitit: requeue this job and exit the process). Ranks other than 0 end
    here: submitit requeues from rank 0, and the requeued job starts every rank again."""
    global handed_over, _pending
    if not main:
        handed_over, _pending = True, None
        raise SystemExit(0)
    signum, previous = _pending or (signal.SIGUSR2, _previous)
    _pending = None
    try:
        previous(signum, None)
    except SystemExit:  # submitit requeued the job and exits this process
        handed_over = True
        raise
