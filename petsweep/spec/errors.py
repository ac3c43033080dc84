"""User-facing errors: one line that names the key, the value and the fix, and the one place that prints
them (every entry point: run.py, the sweepers, warm workers, fused groups, rank children)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys

# how a run ends, as `run.py`'s exit status (and a warm worker's or a fused group's code per run)
EXIT_FAILED, EXIT_REFUSED, EXIT_CANCELLED, EXIT_INTERRUPTED = 1, 2, 143, 130  # 128 + SIGTERM, SIGINT


class PetsweepError(Exception):
    """A problem with the user's input or environment, reported as one clear line (no traceback)."""


class ConfigError(PetsweepError):
    """A composed config that cannot run: names the key, the value and the valid choices."""

    def __init__(self, key: str, value, expected: str):
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key}={value!r}: {expected}")


class ConfigErrors(ConfigError):
    """Several runs' ConfigErrors reported at once, one line each, and a last line saying what to do: a sweep
    some of whose cells cannot take their budget names every such cell before anything runs (#24), not the
    first one alone. Key, value and expected are the first error's (for code that reads one)."""

    def __init__(self, errors: list[ConfigError], advice: str):
        self.errors, self.advice = list(errors), advice
        first = self.errors[0]
        super().__init__(first.key, first.value, first.expected)

    def lines(self) -> list[str]:
        return [str(e) for e in self.errors] + [self.advice]

    def __str__(self) -> str:
        return "\n".join(self.lines())


class DataError(PetsweepError):
    """A data file or dataset that cannot be read as the task describes."""


class RunFailed(PetsweepError):
    """A run that failed in processes of its own (its ranks), whose errors are printed above and recorded on
    the run: one line, and the exit status of a failed run (EXIT_FAILED), as a one-rank run's failure has."""


class RunCancelled(BaseException):
    """SIGTERM (petsweep cancel, scancel): the run stops, records CANCELLED, and a rerun resumes it."""


class SweepStopped(RunCancelled):
    """A signal (`signal_name`: SIGTERM, Ctrl-C) stopped a local sweep, raised once its running runs have
    ended: the message counts what they came to (launchers/local.py); `exit_status` is 130 for Ctrl-C, else
    143."""

    def __init__(self, signal_name: str, counts: str, exit_status: int):
        super().__init__(counts)
        self.signal_name, self.exit_status = signal_name, exit_status


DISK_ERRNOS = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space", errno.EROFS: "remount it"}


def disk_problem(err: BaseException) -> str | None:
    """The one line for a disk that takes no writes (full, over quota, read-only), naming the path; None for
    any other error. Libraries in Rust (safetensors) raise their own type, saying `(os error 28) at path
    "..."`: read as the OSError it reports."""
    err = reported_os_error(err)
    if err is None or err.errno not in DISK_ERRNOS:
        return None
    where = f"cannot write {err.filename}" if err.filename else "a write failed"
    return (
        f"{where}: {err.strerror} ({errno.errorcode[err.errno]}); {DISK_ERRNOS[err.errno]} or give another "
        "paths.runs_root, then run the same command again (finished runs are kept, the others resume)"
    )


def reported_os_error(err: BaseException) -> OSError | None:
    """`err` as the OSError it is or reports (a Rust library's `(os error 28) at path "..."`), else None."""
    if isinstance(err, OSError):
        return err
    found = re.search(r'\(os error (\d+)\)(?: at path "([^"]*)")?', str(err))
    if found is None:
        return None
    code = int(found[1])
    return OSError(code, os.strerror(code), found[2])


def report_user_error(err: BaseException) -> int | None:
    """Print the one line a PetsweepError, a cancelled run or a disk that takes no writes gets (stderr, no
    traceback) and return its exit status; None for anything else (a failure, which keeps its traceback).
    The line is left out where it cannot be written (stderr on the full disk)."""
    if isinstance(err, ConfigErrors):
        line, status = "\n".join(f"error: {x}" for x in err.lines()), EXIT_REFUSED
    elif isinstance(err, PetsweepError):
        line, status = f"error: {err}", EXIT_FAILED if isinstance(err, RunFailed) else EXIT_REFUSED
    elif disk_problem(err):
        line, status = f"error: {disk_problem(err)}", EXIT_FAILED
    elif isinstance(err, SweepStopped):
        verb = "interrupted" if err.exit_status == EXIT_INTERRUPTED else "cancelled"
        line = f"{verb} ({err.signal_name}): {err}; run the same command again to resume"
        status = err.exit_status
    elif isinstance(err, RunCancelled):  # `recorded`: set where the run wrote CANCELLED (app.record_failure)
        said = "the run recorded CANCELLED" if getattr(err, "recorded", False) else "no run was recorded"
        line = f"cancelled ({err}): {said}; run the same command again to resume it"
        status = EXIT_CANCELLED
    else:
        return None
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)
    return status


@contextlib.contextmanager
def exit_on_user_error():
    """Turn a PetsweepError into one line on stderr and exit status 2 (no traceback; a RunFailed: 1); a
    cancelled run: 143; a disk that takes no writes (full, read-only): one line naming the path, exit status
    1."""
    try:
        yield
    except (PetsweepError, RunCancelled) as err:
        sys.exit(report_user_error(err))
    except KeyboardInterrupt:  # Ctrl-C outside a run and the local pool (planning, importing): none ran here
        with contextlib.suppress(OSError):
            print(
                "interrupted (Ctrl-C): run the same command again to resume",
                file=sys.stderr,
                flush=True,
            )
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:
        if disk_problem(err) is None:
            raise
        sys.exit(report_user_error(err))


# the signals that stop a run, as its record and its one line name them ("stopped by SIGINT (Ctrl-C)")
STOP_SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT (Ctrl-C)"}


class StopRequest:
    """A stop signal (SIGTERM, SIGINT) this process got: the handlers (stop_on_signals', and a run's own,
    run/app.cancel_on_sigterm) raise RunCancelled at once and note `reason` here, since a raise from a signal
    handler that lands while Python runs a __del__ or a weakref callback is printed and dropped (a tokenizer's
    regex cache was being collected: the run trained to the end; review of 2026-12-06, G2, G2a): a run does
    not start on a noted stop, and the next step boundary raises it again (Training.begin_step). Per process
    by nature, as a signal's handler is; cleared when a run ends (app.restore_signals)."""

    def __init__(self):
        self.reason: str | None = None


STOP = StopRequest()


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM stop this process from its start (planning, composing, the pool's wait), also where
    a script started it with SIGINT ignored (`run.py -m ... &`): a run then records CANCELLED (app.py sets
    its own handlers while it trains) and a sweep starts no other run (launchers/local.py). For run.py and a
    run's own process (petsweep.run.worker --run)."""

    def cancelled(signum, frame):
        STOP.reason = "stopped by SIGTERM"  # a run that had not started yet does not start (StopRequest)
        raise RunCancelled(STOP.reason)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, cancelled)
