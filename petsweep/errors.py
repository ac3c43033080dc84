"""User-facing errors: one line that names the key, the value and the fix."""

# how a run ends, as `run.py`'s exit status (and a warm worker's or a fused group's code per run)
EXIT_FAILED, EXIT_REFUSED, EXIT_CANCELLED, EXIT_INTERRUPTED = 1, 2, 143, 130  # 128 + SIGTERM, SIGINT


class PetsweepError(Exception):
    """A problem with the user's input or environment, reported as one clear line (no traceback)."""


class ConfigError(PetsweepError):
    """A composed config that cannot run: names the key, the value and the valid choices."""

    def __init__(self, key: str, value, expected: str):
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key}={value!r}: {expected}")


class DataError(PetsweepError):
    """A data file or dataset that cannot be read as the task describes."""


class RunCancelled(BaseException):
    """SIGTERM (petsweep cancel, scancel): the run stops, records CANCELLED, and a rerun resumes it."""
