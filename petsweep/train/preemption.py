"""Save-on-signal for cluster jobs: SLURM's USR2 (sent before a time limit or a preemption) is deferred to the
next step boundary, where the run writes a checkpoint and then hands the signal to submitit, which requeues
the job. A checkpoint taken mid-step would hold half-updated state; at a boundary it is exact.
"""

from __future__ import annotations

import signal


class HandedOver(SystemExit):
    """The process ends because the run handed the cluster's signal over (submitit requeues the job, and the
    requeued job resumes from the checkpoint just saved): the run records QUEUED, not FAILED."""


class DeferredSignal:
    """The cluster's signal as this process holds it: `pending` (signum, the handler installed before ours)
    once it arrived, `previous` (submitit's handler, for a rank 0 that agreed to stop before its own signal
    arrived). Per process by nature: a signal and its handler are the process's. One for the process: SIGNAL.
    """

    def __init__(self):
        self.pending: tuple | None = None
        self.previous = None


SIGNAL = DeferredSignal()


def install() -> None:
    """Defer SIGUSR2 if someone (submitit) handles it; a no-op for plain local runs."""
    previous = signal.getsignal(signal.SIGUSR2)
    if not callable(previous) or getattr(previous, "defers_to_step_boundary", False):
        return  # nobody to hand over to, or an earlier run of this process (runs_per_task) installed ours
    SIGNAL.previous = previous

    def defer(signum, frame):
        SIGNAL.pending = (signum, previous)

    defer.defers_to_step_boundary = True

    try:
        signal.signal(signal.SIGUSR2, defer)
    except ValueError:  # not the main thread
        pass


def requested() -> bool:
    return SIGNAL.pending is not None


def hand_over(main: bool = True) -> None:
    """Call the deferred handler (submitit: requeue this job and exit the process), which ends the process
    with HandedOver. Ranks other than 0 end here: submitit requeues from rank 0, and the requeued job starts
    every rank again."""
    if not main:
        SIGNAL.pending = None
        raise HandedOver(0)
    signum, previous = SIGNAL.pending or (signal.SIGUSR2, SIGNAL.previous)
    SIGNAL.pending = None
    try:
        previous(signum, None)
    except SystemExit as exit:  # submitit requeued the job and exits this process
        raise HandedOver(exit.code) from exit
