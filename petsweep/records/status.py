"""A run directory on disk: its status marker, record files and their atomic writes.

Layout: config.yaml, status.json (QUEUED / RUNNING / COMPLETED / FAILED / CANCELLED), heartbeat, result.json,
provenance.json, metrics.jsonl, train.log, error.txt (on failure), slurm.json (cluster runs), checkpoints/.

Liveness: a RUNNING run beats (rewrites `heartbeat`) every HEARTBEAT_S seconds. A RUNNING status whose
process is gone (same host) or whose beat is older than STALE_AFTER_S (any host: a node that died without a
word) is not live, and a sweep relaunches the run. A QUEUED run is live while SLURM still lists its job.
Claiming a run (QUEUED or RUNNING) checks liveness and writes the status under a file lock, so two sweeps
launched at once never both start it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from enum import Enum
from pathlib import Path

from petsweep.records import index
from petsweep.records.files import replace_file
from petsweep.spec.errors import PetsweepError


class State(str, Enum):
    """Where a run stands: the one set of states. status.json holds QUEUED (submitted to a cluster, not
    started), RUNNING, COMPLETED, FAILED or CANCELLED; a sweep's view adds NEW (no run dir yet) and
    INTERRUPTED (RUNNING or QUEUED, with no live process or queued job behind it)."""

    NEW = "NEW"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def word(self) -> str:
        """The state in a summary's prose ("3 done, 1 new")."""
        return "done" if self is State.COMPLETED else self.value.lower()


QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = (
    State.QUEUED,
    State.RUNNING,
    State.COMPLETED,
    State.FAILED,
    State.CANCELLED,
)
# <sweep>/.invalidated/<time>[-k]/<run>: runs moved aside by `petsweep invalidate` or `rehash`
INVALIDATED_DIR = ".invalidated"
# what a process killed mid-write leaves: a checkpoint's temporary dir (checkpoint.begin) and write_atomic's
# temporary file; cleared when the run is next claimed (no live process writes them then)
CHECKPOINT_TMP_GLOB = ".step-*.tmp*"
ATOMIC_TMP_GLOB = ".*.tmp"
HEARTBEAT_S = float(os.environ.get("PETSWEEP_HEARTBEAT_S", "30"))
STALE_AFTER_S = 10 * HEARTBEAT_S  # ten missed beats: the process or its node is gone


def new_aside_batch(sweep_dir: Path) -> Path:
    """A fresh `<sweep>/.invalidated/<time>[-k]/` for one batch of runs moved aside (invalidate, rehash):
    two batches in the same second get folders of their own, so neither's invalidated.json (its reason)
    nor a run dir of the same name is overwritten."""
    parent = Path(sweep_dir) / INVALIDATED_DIR
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1, 10_000):
        batch = parent / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            batch.mkdir()
        except FileExistsError:
            continue
        return batch
    raise PetsweepError(f"{parent}: no free folder for {stamp}")


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename (files.replace_file, fsync'd), so a reader never sees a
    half-written file. A write that fails (a full disk) leaves the file as it was and no temporary file; its
    OSError names `path`."""
    try:
        replace_file(path, lambda fh: fh.write(text.encode("utf-8")), fsync=True)
    except OSError as err:
        if err.filename is None:  # a failed flush or fsync names no file
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def remove(path: Path) -> None:
    """Remove a file, a link or a whole directory; nothing where it is already gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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


def current_slurm_job() -> str | None:
    """This process's SLURM job id as submitit names it (`<array job>_<task>` inside an array), or None."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def slurm_queue() -> set[str] | None:
    """Job ids SLURM lists (pending or running; array tasks as `<job>_<task>`); None if it cannot be asked."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(out.stdout.split()) if out.returncode == 0 else None


class RunDir:
    """One run's directory; every write to its records goes through here."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.status_file = self.path / "status.json"
        self.result_file = self.path / "result.json"
        self.config_file = self.path / "config.yaml"  # the resolved config, written when the run is claimed
        self.metrics_file = self.path / "metrics.jsonl"
        self.heartbeat_file = self.path / "heartbeat"
        self.checkpoints = self.path / "checkpoints"
        self.progress_file = self.path / "progress.json"  # where training stands (petsweep.train.progress)

    def status(self) -> dict | None:
        """status.json; a COMPLETED run whose result.json is missing or does not parse (truncated by a
        crash or a full disk) reads as FAILED with a one-line error, so it is rerun, never reported done."""
        try:
            status = json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if status.get("state") == COMPLETED and self.result() is None:
            error = f"{self.result_file.name} is missing or does not parse: the run is trained again"
            return {**status, "state": FAILED.value, "error": error}
        return status

    def state(self) -> str | None:
        status = self.status()
        return status["state"] if status else None

    def last_seen(self, status: dict) -> float:
        """The newest sign of life: the status write or the latest heartbeat."""
        try:
            beat = float(self.heartbeat_file.read_text())
        except (OSError, ValueError):
            beat = 0.0
        return max(float(status.get("updated", 0.0)), beat)

    def slurm_job(self, status: dict) -> str | None:
        """The SLURM job of a QUEUED run: named in the status, or in slurm.json by the same submission."""
        if status.get("slurm_job_id"):
            return str(status["slurm_job_id"])
        try:
            meta = json.loads((self.path / "slurm.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return str(meta["job_id"]) if meta.get("token") and meta.get("token") == status.get("token") else None

    def is_live(self, queue=slurm_queue) -> bool:
        """Someone else is working on this run: RUNNING with a live process and a fresh beat, or QUEUED with
        its job still listed by SLURM (`queue`: the listed job ids, None if SLURM cannot be asked, or a
        function that asks it, called only for a QUEUED run)."""
        status = self.status()
        if not status or status["state"] not in (RUNNING, QUEUED):
            return False
        fresh = time.time() - self.last_seen(status) < STALE_AFTER_S
        if status.get("host") == socket.gethostname():  # the writer's process can be asked directly
            writer_alive = status.get("pid") != os.getpid() and _pid_alive(status.get("pid", -1))
        else:
            writer_alive = True
        job = self.slurm_job(status) if status["state"] == QUEUED else None
        if job is None:  # RUNNING, or QUEUED while its sweep is still submitting it (no job id yet)
            return writer_alive and fresh
        if job == current_slurm_job():
            return False  # our own queue entry: this process is the job
        queue = queue() if callable(queue) else queue
        return True if queue is None else job in queue  # cannot ask SLURM: do not relaunch behind its back

    def set_status(self, state: str, check: index.IdentityCheck | None = None, **extra) -> None:
        """Write status.json (`extra`: its fields besides the state) and the sweep index's line for it;
        `check`: the identity check of a COMPLETED record, which only a writer on the run floor has
        (without it the line leaves the check to its first reader)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(
            self.status_file,
            {
                "state": state,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "updated": time.time(),
                **extra,
            },
        )
        # the sweep index's line for this change (#25): every state change passes here
        index.record(self, check)

    @contextlib.contextmanager
    def locked(self):
        """The run's claim lock (a file lock on <run>/.claim.lock). A run dir moved aside while this process
        waited for it (petsweep invalidate moves runs under this lock) takes its lock file along: the lock is
        then taken again on the path, so both sides always hold the lock of the same file."""
        while True:
            self.path.mkdir(parents=True, exist_ok=True)
            fh = open(self.path / ".claim.lock", "a")  # held across the yield below
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                there = os.stat(self.path / ".claim.lock")
            except FileNotFoundError:
                there = None
            held = os.fstat(fh.fileno())
            if there is not None and (there.st_ino, there.st_dev) == (held.st_ino, held.st_dev):
                break
            fh.close()  # the dir moved on: closing drops the lock of the moved file
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    _locked = locked

    def claim(self, state: str, queue=slurm_queue, owner: str | None = None, **extra) -> str | None:
        """Write `state` (RUNNING or QUEUED) unless the run is live elsewhere; the check and the write happen
        under one lock. `owner`: the token of the QUEUED claim this process was submitted under (a cluster
        job may start before its sweep has recorded the job id). Returns the new token (None: not claimed)."""
        with self._locked():
            status = self.status() or {}
            ours = owner is not None and status.get("token") == owner
            # a requeued SLURM task (perhaps on another node) keeps its job id: the run it held is its own
            job = current_slurm_job()
            ours = ours or (job is not None and status.get("slurm_task") == job)
            if not ours and self.is_live(queue):
                return None
            self.clear_leftovers()
            token = uuid.uuid4().hex
            if job is not None:
                extra = {"slurm_task": job, **extra}
            self.set_status(state, token=token, **extra)
            self.beat()
            return token

    def clear_leftovers(self) -> list[Path]:
        """Remove what a killed writer left half-written: checkpoint temporary dirs and write_atomic's
        temporary files (called by claim, under the lock, once no live process holds the run); returns
        them."""
        found = [*self.checkpoints.glob(CHECKPOINT_TMP_GLOB), *self.path.glob(ATOMIC_TMP_GLOB)]
        for path in found:
            remove(path)
        return found

    def beat(self) -> None:
        write_atomic(self.heartbeat_file, f"{time.time():.3f}")

    @contextlib.contextmanager
    def heartbeat(self, every_s: float = HEARTBEAT_S):
        """Beat every `every_s` seconds from a background thread while the block runs."""
        stop = threading.Event()

        def loop():
            while not stop.wait(every_s):
                with contextlib.suppress(OSError):
                    self.beat()

        thread = threading.Thread(target=loop, name="petsweep-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def result(self) -> dict | None:
        """result.json; None where it is missing, truncated or not a JSON object."""
        try:
            result = json.loads(self.result_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return result if isinstance(result, dict) else None

    def config(self) -> dict:
        """config.yaml parsed ({} where the run has none); yaml.YAMLError where it does not parse. libyaml's
        loader where installed: 6x the pure-Python one, and a plan reads one per finished run."""
        import yaml

        try:
            text = self.config_file.read_bytes()
        except FileNotFoundError:
            return {}
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}

    def progress(self) -> dict:
        """The latest progress.json (step, loss, rate, ETA, dev scores); {} before the first report."""
        try:
            return json.loads(self.progress_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def append_metrics(self, row: dict) -> None:
        with self.metrics_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


CANCEL_MARKER = "cancel.json"  # in a sweep dir: `petsweep cancel` was asked at this time
LAUNCHED_AT_ENV = "PETSWEEP_LAUNCHED_AT"  # set by the local launcher: when its sweep launch began


def cancel_sweep(sweep_dir: Path) -> None:
    write_json(Path(sweep_dir) / CANCEL_MARKER, {"time": time.time()})


def sweep_cancelled(sweep_dir: Path, since: float) -> bool:
    """Whether `petsweep cancel` was asked for this sweep after `since` (a launch that began before it)."""
    try:
        return float(json.loads((Path(sweep_dir) / CANCEL_MARKER).read_text())["time"]) >= since
    except (OSError, ValueError, KeyError):
        return False


def run_dirs(where: str | Path, depth: int = 1) -> list[Path]:
    """The dirs holding a status.json `depth` levels under `where` (1: a sweep dir's runs, 2: a runs root's),
    sorted. A hidden dir (its name starts with ".") is neither a run nor a sweep, at any level: the sweep's
    own .index and .invalidated, a sweep moved aside as `.old`; the sweep index lists runs so too (R37 F2:
    pathlib's glob matched hidden dirs, the index's listing did not)."""
    where = Path(where)
    found = [p.parent for p in where.glob("/".join(["*"] * depth) + "/status.json")]
    return sorted(p for p in found if visible(p, depth))


def visible(run_or_sweep: Path, depth: int = 1) -> bool:
    """Whether a dir `depth` levels under what was listed (1: a sweep's run, or a runs root's sweep; 2: a
    runs root's run) is a run or sweep by name: no hidden dir on the way (run_dirs' rule)."""
    return not any(part.startswith(".") for part in Path(run_or_sweep).parts[-depth:])


def find_runs(sweep_dir: str | Path) -> list[Path]:
    """The run directories (those with a status.json) of a sweep dir, or of every sweep under a runs root,
    sorted; none is one clear error."""
    sweep = Path(sweep_dir)
    found = run_dirs(sweep) if sweep.is_dir() else []
    if not found and sweep.is_dir():  # a runs root: <root>/<sweep>/<run>
        found = run_dirs(sweep, 2)
    if not found:
        raise PetsweepError(
            f"{sweep} holds no petsweep runs (no <run dir>/status.json); give <runs_root>/<sweep>"
        )
    return found
