"""Local multi-rank runs, torchrun-style: the process that was asked for a run of G ranks starts G copies of
it (`python -m petsweep.run.worker --rank <spec file>`: the run's ResolvedRun as JSON; RANK, WORLD_SIZE and
MASTER_* set) and supervises them.

Rank 0 owns the run's records exactly as a SLURM task of rank 0 does. The parent only steps in when a rank
dies, or outlives rank 0 by more than a moment: it stops the others (they would wait in a collective until the
timeout) and records the run FAILED with the rank and its exit code or signal, unless rank 0 recorded the run
COMPLETED: a rank that died or hung after that, in its teardown, lost nothing of it, and the run stands (with
a warning). A rank that raises notes when and why (note_failure), so that the record names the rank that
failed first, not rank 0's loss of its peer, and a failure is not taken for the cancel that followed it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import NamedTuple

from petsweep.records.status import CANCELLED, COMPLETED, FAILED, RUNNING, RunDir, write_atomic
from petsweep.spec.errors import EXIT_CANCELLED, STOP_SIGNALS, PetsweepError, RunCancelled, RunFailed
from petsweep.spec.resolved import ResolvedRun

POLL_S = 0.2
GRACE_S = 5.0  # for the other ranks to end on their own once one has died, or rank 0 has ended
ENDING_S = 120.0  # for rank 0 to end once it recorded the run COMPLETED
RANK_ERROR = "PETSWEEP_RANK_ERROR"  # the file where a spawned rank notes its failure (note_failure)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_env(rank: int, world: int, port: int, threads: int | None, spec_file: str) -> dict:
    env = dict(
        os.environ,
        PETSWEEP_RANK_ERROR=_noted_at(spec_file, rank),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _noted_at(spec_file: str, rank: int) -> str:
    return f"{spec_file}.rank{rank}.error"


def note_failure(err: BaseException) -> None:
    """In a spawned rank, in the handler of the run's failure (before its process group goes, so before the
    others can fail on losing it): when, why and the traceback, for the supervisor (review -112). A stop (a
    cancel, Ctrl-C, a requeue) is not a failure; an exit with a status other than 0 is. Never raises."""
    from petsweep.train.preemption import HandedOver

    path = os.environ.get(RANK_ERROR)
    stopped = isinstance(err, (RunCancelled, HandedOver, KeyboardInterrupt))
    if not path or stopped or (isinstance(err, SystemExit) and err.code in (None, 0, EXIT_CANCELLED)):
        return
    note = {"at": time.time(), "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()}
    with contextlib.suppress(OSError):
        Path(path).write_text(json.dumps(note))


class Note(NamedTuple):
    """A rank's failure as it noted it (note_failure); the earliest compares least."""

    at: float
    rank: int
    error: str
    trace: str


class Stop(NamedTuple):
    """A stop signal the supervisor forwarded, when, and whether a rank had already failed (exited badly)."""

    signum: int
    at: float
    after_a_failure: bool


def _notes(spec_file: str, world: int) -> dict[int, Note]:
    """The notes of the ranks that noted a failure (note_failure), by rank."""
    notes = {}
    for rank in range(world):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            note = json.loads(Path(_noted_at(spec_file, rank)).read_text())
            notes[rank] = Note(float(note["at"]), rank, str(note["error"]), str(note.get("trace", "")))
    return notes


def _failed(code: int | None) -> bool:
    """Whether a rank's exit status is a failure (not running, done, cancelled or stopped by SIGTERM)."""
    return code not in (None, 0, EXIT_CANCELLED, -signal.SIGTERM)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the supervising parent dies (killed without a word, its
    ranks must not train on as orphans that hold the run)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: orphans end at their next collective's timeout
        pass


def exit_text(code: int | None) -> str:
    """`killed by signal 9 (SIGKILL)`, `exited with 3`, or (None) that the supervisor stopped it."""
    if code is None:
        return f"did not end within {GRACE_S:g} s of the others and was stopped"
    return f"killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exited with {code}"


def run_ranks(resolved: ResolvedRun, world: int, run_path: RunDir, threads: int | None = None) -> dict:
    """Run `resolved` as `world` local processes, each handed the spec as resolved here (device decided);
    returns rank 0's result record (or raises with the failure)."""
    if threads:  # each rank its share of the run's threads (not part of the identity)
        resolved = resolved.with_threads(threads)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(resolved.to_dict(), fh)
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "petsweep.run.worker", "--rank", fh.name],
            env=_rank_env(r, world, port, threads, fh.name),
            preexec_fn=_die_with_parent,
            process_group=0,  # a terminal's Ctrl-C reaches the ranks once, through `forward`
        )
        for r in range(world)
    ]
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    stops: list[Stop] = []

    # `petsweep cancel` or Ctrl-C: every rank gets SIGTERM, whose default ends a rank still starting without a
    # word (a SIGINT's KeyboardInterrupt printed a traceback from wherever it landed: review -111); a running
    # rank takes either the same way (CANCELLED). The ranks have process groups of their own (Popen above), so
    # a terminal's Ctrl-C reaches them only from here, once.
    def forward(signum, frame):
        stops.append(Stop(signum, time.time(), any(_failed(p.poll()) for p in procs)))
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    try:
        for sig in previous:
            signal.signal(sig, forward)
    except ValueError:  # not the main thread
        previous = {}
    try:
        ended = _supervise(procs, run_path)
        if ended is None:
            return json.loads(run_path.result_file.read_text())
        return _ended_badly(run_path, procs, ended, stops, _notes(fh.name, world))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for path in [fh.name, *(_noted_at(fh.name, r) for r in range(world))]:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _killed(code: int | None) -> bool:
    """Whether a rank's exit status is a death by a signal other than a stop's SIGTERM."""
    return code is not None and code < 0 and -code != signal.SIGTERM


def _ended_badly(
    run_path: RunDir, procs: list, ended: list, stops: list[Stop], notes: dict[int, Note]
) -> dict:
    """A run whose ranks did not all exit 0 (`ended`: each one's exit status, None where stopped here): its
    result where rank 0 had recorded it COMPLETED; else the run recorded CANCELLED or FAILED, naming the rank
    that failed first, and raised as a one-rank run's is."""
    world = len(procs)
    failures = [(r, code) for r, code in enumerate(ended) if code not in (None, 0)]
    rank, code = min(failures, key=lambda f: (f[1] >= 0, f[0])) if failures else (ended.index(None), None)
    status = run_path.status() or {}
    finished = run_path.result() if _completed_by(status, procs[0]) else None
    if finished is not None:  # a rank that died after the run's end was recorded lost nothing of it
        print(f"warning: rank {rank} of {world} {exit_text(code)} after the run ended", file=sys.stderr)
        return finished
    ours, state = status.get("pid") in {p.pid for p in procs}, status.get("state")
    if state == CANCELLED:  # a note after rank 0's cancel: a loss of the peer to it (`petsweep cancel`: -113)
        notes = {r: note for r, note in notes.items() if note.at < status.get("updated", 0)}
    raised = min(notes.values(), default=None)
    # the cause: a rank killed by a signal before it noted anything (an OOM kill: what the others raised then,
    # a lost peer, is not news), else the rank that noted a failure first (review -112; one that then died
    # in its teardown is ordered by its note: -114), else the first to exit badly
    silent = [(r, c) for r, c in failures if _killed(c) and r not in notes]
    killed = bool(silent) or (raised is None and _killed(code))
    if silent:
        rank, code = silent[0]
    cause = f"rank {rank} of {world} {exit_text(code)}"
    if raised and not killed:
        rank, cause = raised.rank, f"rank {raised.rank} of {world} failed: {raised.error}"
    # Ctrl-C or a cancel, forwarded to every rank (as SIGTERM), or rank 0's own cancel: what a rank raised
    # then followed from it, unless a rank was killed by another signal (an OOM kill just before: review -111)
    # or had failed before (a note older than the stop, or than rank 0's CANCELLED: -114)
    failed_first = (raised is not None and state == CANCELLED) or (
        bool(stops) and (stops[0].after_a_failure or (raised is not None and raised.at < stops[0].at))
    )
    if stops and not killed and not failed_first:
        raise _cancelled(run_path, status if ours else {}, stops[0].signum)
    if not ours:  # never ours (refused: another process has the run)
        raise PetsweepError(
            f"rank {rank} of {world} {exit_text(code)} before the run started (its error is above)"
        )
    # the record names the cause where rank 0 did not record it: a rank killed, a rank that raised first
    # (rank 0 recorded its loss of that peer), or a failure a cancel then followed; a run rank 0 recorded
    # CANCELLED otherwise stays so (review Z: a rank aborted in its teardown after a cancel)
    recorded_otherwise = (state == FAILED and (killed or rank != 0)) or (state == CANCELLED and failed_first)
    if state == RUNNING or recorded_otherwise:
        run_path.set_status(FAILED, error=cause)
        status = run_path.status() or {}
        _explain(run_path, cause, raised.trace if raised and not killed else "")
    if status.get("state") == CANCELLED:  # `petsweep cancel` signals rank 0 alone, which records it
        raise _cancelled(run_path, status, signal.SIGTERM)
    # exit 1, as a failed one-rank run's (review Z F4: it was 2, a refused run's)
    said = status.get("error") or exit_text(code)
    raise RunFailed(f"run {run_path.path} {status.get('state', FAILED)}: {said}")


def _explain(run_path: RunDir, cause: str, trace: str) -> None:
    """error.txt for a cause the supervisor recorded: the failing rank's traceback (where it raised), then
    what rank 0 had written there (its loss of that peer), so the record's line and file agree (-113)."""
    error_file = run_path.path / "error.txt"
    try:
        before = error_file.read_text()
    except OSError:
        before = ""
    told = trace or f"{cause}\n"
    if before:
        told += f"\nwhat rank 0 recorded then:\n{before}"
    with contextlib.suppress(OSError):
        write_atomic(error_file, told)


def _cancelled(run_path: RunDir, status: dict, signum: int) -> RunCancelled:
    """A stopped run, recorded and reported as a cancelled one-rank run is: CANCELLED (also where rank 0
    failed on a peer that the signal stopped first, or never got to record it), one line (the ranks say
    nothing: worker.run_rank) and exit status 143 (review Z F4: it exited 2, a refused run's status).
    `status`: the run's, where our rank 0 wrote it (else {}: nothing of it is ours to record)."""
    cancelled = RunCancelled(f"stopped by {STOP_SIGNALS[signum]}")
    said = f"{RunCancelled.__name__}: {cancelled}"
    state = status.get("state")
    if state in (RUNNING, FAILED) or (state == CANCELLED and status.get("error") != said):
        run_path.set_status(CANCELLED, error=said)  # (rank 0 names SIGTERM for a Ctrl-C: forward sent it)
    cancelled.recorded = bool(status)
    return cancelled


def _completed_by(status: dict, rank0: subprocess.Popen) -> bool:
    """Whether rank 0 recorded the run COMPLETED: every rank had taken part in the run's last collective (the
    evaluation's gather) by then, so a rank that died after it, in its teardown, took nothing of the run."""
    return status.get("state") == COMPLETED and status.get("pid") == rank0.pid


def _rank0_ending(rank0: subprocess.Popen, run_path: RunDir) -> bool:
    """Rank 0 still running, having recorded the run COMPLETED (asked only once the grace is over)."""
    return rank0.poll() is None and _completed_by(run_path.status() or {}, rank0)


def _supervise(procs: list[subprocess.Popen], run_path: RunDir) -> list[int | None] | None:
    """Wait for every rank. Once one fails, or rank 0 has ended (what the others have left then is their
    teardown), give them a moment to end on their own, then stop those left. Returns None where every rank
    exited 0, else each rank's exit status as it ended (None: stopped here)."""
    while True:
        codes = [p.poll() for p in procs]
        if all(code == 0 for code in codes):
            return None
        if any(code not in (None, 0) for code in codes) or codes[0] == 0:
            break
        time.sleep(POLL_S)
    # a rank whose peer vanished fails its next collective (on gloo at once); one still running after GRACE_S
    # is stuck, unless it is rank 0 having recorded the run COMPLETED (it prunes checkpoints: ENDING_S)
    began = time.monotonic()
    while any(p.poll() is None for p in procs):
        waited = time.monotonic() - began
        if waited > GRACE_S and not (waited < ENDING_S and _rank0_ending(procs[0], run_path)):
            break
        time.sleep(POLL_S)
    ended = [p.poll() for p in procs]
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()
    return ended if any(code != 0 for code in ended) else None
