"""The sweep index: a cache of each run's state and results, so `petsweep status`, `collect` and
`invalidate` read a sweep of 10^5..10^6 runs without opening every run's files (#25).

Where: `<sweep>/.index/`. Each process that changes a run's state (RunDir.set_status: every claim, start,
end, failure and cancel goes through it) appends one JSON line to a file of its own,
`<host>-<pid>-<start>.jsonl`: no two processes write one file, so many writers on NFS need no lock.
Readers merge every line file with `manifest.parquet`, which a reader writes when lines have piled up
(`petsweep collect` whenever anything changed): written under a temporary name, renamed over the old one,
then the line files it folded in are unlinked, but for one that grew since it was read (read again next
time). A crash anywhere in between leaves a manifest and lines that say the same; a line appended in the
instant between that check and the unlink is lost, and its run is read from its files (its stat moved).

The run dirs stay the truth; the index only says what their files held when it read them. Every entry
carries the stat signature of its run at that moment (the run dir's mtime, status.json's mtime, size and
inode, result.json's mtime and size); a reader stats each run (3 stats) and uses an entry only where the
signature is still the run's. A run whose files changed behind the index (an edit, a crash between
status.json and its line, a run dir copied in, runs older than the index) is read from its files, and a
line is appended that repairs the index. Record writes rename files into the run dir (write_atomic), which
moves the dir's mtime, so any rewritten record file, error.txt or transfer result (petsweep.run.transfer
touches the dir) is seen; an in-place edit of a file other than status.json or result.json is not.

A finished run's line (COMPLETED or FAILED: ROW_STATES) also carries its collected row (records/row.py, the
row collect builds from its files), so a re-collect takes the runs that finished since from their lines and
opens none of their files; a reader names the run dir as it reaches the sweep (the run may have been given
another path). A line without a row (a W&B summary's, other code's, a state before the end) or whose
signature is no longer the run's leaves the row to be read from the files, as before.

The manifest holds a row per run: its signature, status fields (`info`, JSON), recorded config (JSON), and
its table row (collect) column-wise: `layout` (the row's keys in order) and a column per key, typed (`r:key`:
int, float, str or bool where every value is one of them) or JSON text (`j:key`), strings dictionary-encoded,
so collect builds its table a column at a time and decodes each distinct JSON value once (RowBlock).

Entries are also tied to the code that read them (`fingerprint`: the sources of the modules that decide a
run's state, identity and table row): entries of other code are not used. The index is rebuilt from the run
dirs by deleting `<sweep>/.index`; PETSWEEP_INDEX=0 reads every run from its files and writes no index.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import glob
import hashlib
import json
import logging
import os
import socket
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

log = logging.getLogger("petsweep")

ENV = "PETSWEEP_INDEX"
INDEX_DIR = ".index"
MANIFEST = "manifest.parquet"
SIG_FIELDS = (
    "dir_mtime_ns",
    "status_mtime_ns",
    "status_size",
    "status_ino",
    "result_mtime_ns",
    "result_size",
    "config_mtime_ns",
    "config_size",
)
# an entry read within this many seconds of a file's mtime may miss a second write in the same clock tick
# (or an NFS server's coarser clock): it is used for that read but not stored
RACY_S = 2.0
# fields too big to keep in memory for every run: read from the manifest batch by batch (iter_field)
BIG = ("row", "config")
BATCH = 8192
# runs whose manifest rows a fold (Snapshot.compact) builds at once from lines or files: their rows decoded
# at once were a first collect's peak (~16 KB a run: 8192 runs, +0.17 GB at 10^4 and 5x10^4 runs alike)
FOLD_CHUNK = 2048
# the manifest's pages carry a CRC, checked when read: a flipped byte in a value reads as an error (the runs
# are read from their files and the manifest written anew), not as another value (review W: a score 0.5
# read back 0.53125, for ever); a manifest written without them is read as before
CHECKSUMS = True
# the status fields `petsweep status` needs of every run, typed beside `info` (its JSON, decoded only for the
# lines a table prints): the state status.json holds, whether the entry is complete (_complete: a finished
# run's identity checked) and whether its record is of another identity (it reads NEW)
STATUS_COLUMNS = ("i:state", "i:complete", "i:stale")
LISTED_NON_RUNS = 1000  # at most this many sub-dirs without status.json are named in the manifest
STAT_THREADS = 8  # StatusScan stats a batch of runs in this many threads (stat waits on the disk, or NFS)
# a stat quicker than this is answered from the kernel's cache: threads would only take turns at the GIL
# (#25: 10^5 runs on local disk, 2 cores: 3.6 s with 8 threads, 1.6 s in one), so a scan whose first
# STAT_PROBE runs' stats average under it stats in one thread
QUICK_STAT_S = 20e-6
STAT_PROBE = 64
STAT_SPAN = 512  # runs a thread stats at a time
READS: Counter = Counter()  # runs read from their files, by what was read ("info", "row", ...): tests count
# the states whose index line carries the run's collected row (record): a finished run's row no longer
# changes, so a re-collect reads it from the line, not the run's files; a claim or start writes none (its row
# changes as it runs, and building it reads config.yaml: a cost on every claim)
ROW_STATES = ("COMPLETED", "FAILED")


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "false", "no")


_SOURCES = (
    "petsweep/records/index.py",
    "petsweep/records/status.py",
    "petsweep/run/rehash.py",
    "petsweep/records/record.py",
    "petsweep/records/row.py",
    "analysis/load.py",
)
# packages every .py file of which counts: a run's id is hashed by spec/ (identity.py, with the schema and
# checks of config.py and the world size of shape.py); a `budget=` run's id holds what the solver
# (model/budget.py, with model/resolve.py's budget_form) chooses, counting parameters on the meta device
# (model/params.py, the backbones, heads) of the method's modules and its budget_* hooks (methods/)
_SOURCE_PACKAGES = ("petsweep/spec", "petsweep/model", "petsweep/methods")


def sources() -> list[str]:
    """The files `fingerprint` hashes, relative to the repository: _SOURCES and every .py of
    _SOURCE_PACKAGES (sorted)."""
    root = Path(__file__).resolve().parent.parent.parent
    found = [
        str(p.relative_to(root))
        for package in _SOURCE_PACKAGES
        for p in sorted((root / package).rglob("*.py"))
    ]
    return [*_SOURCES, *found]


@functools.cache
def fingerprint() -> str:
    """A hash of the sources that decide what an entry holds; entries written under another are not used. A
    listed file that cannot be read counts as missing (tests/test_index.py checks every one exists). Taken
    once per process (a memo): the code a process runs is the code it loaded."""
    root = Path(__file__).resolve().parent.parent.parent
    digest = hashlib.sha256()
    for name in sources():
        try:
            data = (root / name).read_bytes()
        except OSError:
            data = b"\0missing\0"
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:20]


def signature(path: str) -> tuple[int, ...] | None:
    """The run dir's stat signature (SIG_FIELDS); None where it holds no status.json (not a run)."""
    try:
        status = os.stat(path + "/status.json")
        folder = os.stat(path).st_mtime_ns
    except OSError:
        return None
    got = []
    for name in ("/result.json", "/config.yaml"):  # config.yaml: a finished run's identity check reads it
        try:
            found = os.stat(path + name)
            got += (found.st_mtime_ns, found.st_size)
        except OSError:
            got += (-1, -1)
    return (folder, status.st_mtime_ns, status.st_size, status.st_ino, *got)


def scan(sweep: str | Path, others: list[str] | None = None) -> dict[str, tuple[int, ...]]:
    """The runs of a sweep dir (its sub-dirs holding status.json; hidden ones skipped, as status.run_dirs
    skips them), sorted by name, each with its signature. `others`: gets the sub-dirs without status.json."""
    sweep = str(sweep)
    try:
        with os.scandir(sweep) as found:
            names = sorted(e.name for e in found if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return {}
    runs = {}
    for name in names:
        sig = signature(f"{sweep}/{name}")
        if sig is not None:
            runs[name] = sig
        elif others is not None:
            others.append(name)
    return runs


def _racy(sig: tuple[int, ...], now: float) -> bool:
    newest = max(sig[0], sig[1], sig[4], sig[6]) / 1e9
    return now - newest < RACY_S


def _plain(value) -> bool:
    """A value JSON keeps as it is (so a cached row is the row)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


# How a reader or writer that has the identity rule checks a finished run's record (the run floor's
# rehash.identity_check; this floor holds no identity rule): a run dir -> (why its record is of another
# identity, or None where it is of its own, or UNCHECKED; what the check warned of, or None)
IdentityCheck = Callable[[Path], tuple[str | None, str | None]]


class _Unchecked(str):
    """What an IdentityCheck answers where it cannot tell without the budget solver (rehash.identity_check
    with solve=False: a `budget=` record read by a command that loads no torch)."""


UNCHECKED = _Unchecked("not checked: the id of a budget= run holds what the solver chooses")


def info_of(run, check: IdentityCheck | None) -> dict:
    """What `petsweep status` and `invalidate` need of a run (a petsweep.records.status.RunDir), read from its
    files the way they read them: status.json (a COMPLETED run without a readable result.json reads FAILED),
    whether its record is of another identity and what that check warned of (`check`; left out where None:
    the entry stays incomplete and a reader that has the check reads it), a finished run's scalar results
    and its last progress.json."""
    status = run.status() or {}
    state = status.get("state")
    info = {
        "state": state,
        "updated": status.get("updated"),
        "error": status.get("error"),
        "error_txt": os.path.exists(f"{run.path}/error.txt"),
    }
    progress = run.progress()
    info["progress"] = {k: progress.get(k) for k in ("step", "max_steps", "dev_score", "best_dev_score")}
    if state == "COMPLETED":
        result = run.result() or {}
        if check is not None:
            why, warning = check(run.path)
            if why is UNCHECKED:  # left out: the entry stays incomplete, a reader with the solver checks it
                info["unchecked"] = True
            else:
                info["stale"] = why
            if warning is not None:
                info["warning"] = warning  # a plan answered from the index warns as its files did
        keys = ("steps", "best_dev_score", "metric", "score", "pet_moved")  # pet_moved: record.notes
        info["result"] = {k: result.get(k) for k in keys}
    return info


def _complete(info: dict, unchecked_ok: bool = False) -> bool:
    """Whether an entry answers a reader: a finished run's needs its identity checked ("stale"), or, for a
    reader that would leave it unchecked too (`unchecked_ok`: status and show, which load no budget
    solver), the mark that a check without the solver could not tell ("unchecked"). A line without the
    check never replaces one with it (strict: unchecked_ok False)."""
    if info.get("state") != "COMPLETED" or "stale" in info:
        return True
    return unchecked_ok and bool(info.get("unchecked"))


# ---------------------------------------------------------------- writing lines


class LineFiles:
    """This process's own line file of each index dir, open for appending (`<host>-<pid>-<start>.jsonl`).
    Per process by nature: an open fd, named by the process; a forked child finds its parent's here and
    opens its own. One for the process (LINE_FILES): every writer of a sweep appends to the same file."""

    def __init__(self):
        self.pid: int | None = None
        self.start = 0  # when this process opened its first line file: two processes of one pid differ
        self.fds: dict[str, int] = {}  # index dir -> fd

    def fd(self, index_dir: str) -> int:
        if self.pid != os.getpid():  # a fresh process, or a fork's child: its parent's files are not its own
            self.pid, self.start, self.fds = os.getpid(), time.time_ns(), {}
        held = self.fds.get(index_dir)
        if held is not None:
            with contextlib.suppress(OSError):
                if os.fstat(held).st_nlink > 0:
                    return held
                os.close(held)  # folded into the manifest and unlinked: start a new file
        os.makedirs(index_dir, exist_ok=True)
        name = f"{socket.gethostname()}-{self.pid}-{self.start}.jsonl"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC  # never through a link
        fd = os.open(os.path.join(index_dir, name), flags, 0o644)
        self.fds[index_dir] = fd
        return fd


LINE_FILES = LineFiles()


def append(sweep: str | Path, entries: Iterable[dict]) -> None:
    """Append entries as lines to this process's own line file of the sweep's index (one write each: a
    reader never sees half a line but the last one of a file being written, which it skips)."""
    if not entries:
        return
    fd = LINE_FILES.fd(os.path.join(str(sweep), INDEX_DIR))
    fp = fingerprint()
    for entry in entries:
        line = {k: v for k, v in entry.items() if not k.startswith("_")}
        os.write(fd, (json.dumps({**line, "fp": fp}, separators=(",", ":")) + "\n").encode())


def record(run, check: IdentityCheck | None = None) -> None:
    """Index the run's state after its status.json was written (RunDir.set_status, `run` the RunDir; `check`:
    the identity check of a finished record, given by a writer that has it): never raises, the run dir is
    the record and a missing line only costs a reader one read of the run's files."""
    if not enabled():
        return
    try:
        path = str(run.path)
        sig = signature(path)  # before the files are read: a later change shows as another signature
        if sig is None:
            return
        entry = {"run": os.path.basename(path), "sig": list(sig), "t": time.time()}
        entry.update(info_of(run, check))
        if entry["state"] in ROW_STATES:
            entry.update(_row_field(run))
        append(os.path.dirname(path), [entry])
    except Exception as err:  # noqa: BLE001 (an index is a cache: the run goes on)
        log.debug("petsweep: no index line for %s: %s", run.path, err)


def _row_field(run) -> dict:
    """The run's collected row (records.row.line_row) as the line's `row` field (JSON text, as a reader's
    repair line holds it), or nothing where it has none or JSON would not keep it as it is: a reader then
    builds it from the run's files, as before."""
    from petsweep.records.row import line_row

    try:
        row = line_row(run)
    except Exception as err:  # noqa: BLE001 (the line still records the state)
        log.debug("petsweep: no row in the index line of %s: %s", run.path, err)
        return {}
    if row is None or not _plain(row):
        return {}
    return {"row": json.dumps(row, separators=(",", ":"))}


# ---------------------------------------------------------------- reading


def piled(runs_in_lines: int, lines: int, runs: int) -> bool:
    """Whether a sweep's lines have piled up past what a reader should parse beside the manifest, so that
    it folds them into a new one (Snapshot.compact): lines of more than 1% of the runs (at least 1000), or
    ten times that many lines. Runs, not lines: a run's next state, or the repair of its line, does not
    count twice (a run trained again writes two or three)."""
    most = max(1000, runs // 100)
    return runs_in_lines > most or lines > 10 * most


def _index_lines(directory: str):
    """Each readable `*.jsonl` of an index dir, in name order: (file, its size as read, how many lines it
    has, its lines that parse as (run, signature, line)). A line cut short (a writer killed mid-write, a full
    disk) is counted but left out."""
    for file in sorted(glob.glob(os.path.join(glob.escape(directory), "*.jsonl"))):
        try:
            with open(file, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        raws = data.splitlines()
        parsed = (_parsed(raw) for raw in raws)
        yield file, len(data), len(raws), [line for line in parsed if line is not None]


def _parsed(raw: bytes) -> tuple[str, tuple, dict] | None:
    try:
        line = json.loads(raw)
        name, sig = line["run"], tuple(line["sig"])
    except (ValueError, KeyError, TypeError):
        return None
    return (name, sig, line) if isinstance(name, str) else None  # R39 V2: a name a dict could not key


def _well_formed(sig: tuple) -> bool:
    """A signature a stat could give (SIG_FIELDS' 64-bit integers): a quick read takes a line of this code
    for a run's now only where its signature is one (a damaged line crashed it: R39 Z6, W5). A line of other
    code may hold another number of fields (they grew from 6 to 8): it still says the run changed."""
    return len(sig) == len(SIG_FIELDS) and all(type(v) is int and -(2**63) <= v < 2**63 for v in sig)


class NewestLines:
    """Each run's newest line of this code and the runs with a line of other code: what a quick read takes
    for a run's now instead of a stat (status --quick, collect --quick). Newest by status.json's mtime (the
    file server's clock, not each writer's: R37 W3), then the line's time."""

    def __init__(self, fp: str):
        self.fp = fp
        self.sigs: dict[str, tuple] = {}
        self.foreign: set[str] = set()  # R37 W2: a worker on another commit wrote it
        self._order: dict[str, tuple] = {}

    def now(self, name: str, stored: tuple, scanned_at: float = 0.0) -> tuple:
        """The run's signature as a quick read takes it: its newest line's, unless the manifest's entry
        (`stored`) is newer by the files' mtimes, or is of the same status.json write and was stat'ed after
        the line was written (`scanned_at`: when the fold's reader began its stat pass). A fold keeps a
        line file that grew while it was folded, so lines older than the manifest outlive it, and a verified
        read's entry after them must win (R39 Z2, V3: result.json rewritten without a line)."""
        sig = self.sigs.get(name)
        if sig is None:
            return stored
        if _mtimes(sig) < _mtimes(stored):
            return stored
        if sig != stored and sig[1] == stored[1] and self._order[name][1] < scanned_at:
            return stored
        return sig

    def add(self, name: str, sig: tuple, line: dict) -> bool:
        """Take a line in; False where it is of other code (or damaged: no stat gives its signature)."""
        if line.get("fp") != self.fp:
            self.foreign.add(name)
            return False
        if not _well_formed(sig):
            return False
        at = line.get("t")
        order = (sig[1], at if isinstance(at, (int, float)) else -1.0)
        if order >= self._order.get(name, (-1, -1.0)):
            self._order[name] = order
            self.sigs[name] = sig
        return True


class Damaged(OSError):
    """The manifest could not be read as the scan went (StatusScan.batches): its caller reads the sweep
    through a Snapshot, which reads around it and writes it anew."""


class _Superseded(OSError):
    """The manifest is no longer the one a fold read: its fold is dropped (finish logs it; the lines stay)."""


def _file_id(path: str) -> tuple[int, int, int] | None:
    try:
        return _stat_id(os.stat(path))
    except OSError:
        return None


def _stat_id(found: os.stat_result) -> tuple[int, int, int]:
    return found.st_ino, found.st_mtime_ns, found.st_size


@contextlib.contextmanager
def _closing(file):
    """A ParquetFile made of an open file object, closed with that file (its own close() leaves it open)."""
    try:
        yield file
    finally:
        file.close(force=True)


def _columns_sig(names: list[str]) -> str:
    return hashlib.sha256("\0".join(names).encode()).hexdigest()[:16]


def manifest_meta(file, fp: str) -> dict | None:
    """The manifest's metadata (bytes keys: fingerprint, scanned_at, the listing) where it is of this code
    (`fp`), its columns are those it was written with, and what readers decode of it decodes; None
    otherwise. A footer is not covered by the pages' CRCs: review X flipped one bit of a column's name
    (`r:score` read as `r:scose`: every score NaN, for ever) and of `non_runs` (collect --quick crashed)."""
    try:
        meta = file.schema_arrow.metadata or {}
        if meta.get(b"fingerprint", b"").decode() != fp:
            return None
        if meta.get(b"columns", b"").decode() != _columns_sig(file.schema_arrow.names):
            return None
        non_runs = json.loads(meta.get(b"non_runs", b"[]"))
        if not isinstance(non_runs, list) or not all(isinstance(n, str) for n in non_runs):
            return None
        float(meta.get(b"scanned_at", b"0"))
        meta.get(b"sweep_mtime_ns", b"").decode()
        return meta
    except Exception:  # noqa: BLE001 (damaged: read as none)
        return None


def _scanned_at(meta: dict) -> float:
    """When the reader that wrote a manifest began stat'ing the runs (0 for one from before it said)."""
    try:
        return float(meta.get(b"scanned_at", b"0"))
    except ValueError:
        return 0.0


def _signatures(table) -> tuple[list[str], object]:
    """A manifest's run names and their signatures (an int64 array, a row a run)."""
    import numpy as np

    stored = np.column_stack([table.column(f).to_numpy() for f in SIG_FIELDS])
    return table.column("run").to_pylist(), stored


def _mtimes(sig: tuple) -> tuple:
    """A signature's order in time: status.json's mtime, then the newest of the dir's, result.json's and
    config.yaml's."""
    return sig[1], max(sig[0], sig[4], sig[6])


def _listing_if_moved(sweep: str, meta: dict) -> tuple[tuple[int, float], set[str] | None] | None:
    """The sweep dir's mtime and the time it was taken (before a listing, as Snapshot's `_listed`) and,
    where the mtime is not the manifest's listing's (a run dir came or went since), its sub-dirs (hidden ones
    skipped); None in their place where it is. None where the dir cannot be read."""
    try:
        listed = (os.stat(sweep).st_mtime_ns, time.time())
        if meta.get(b"sweep_mtime_ns", b"").decode() == str(listed[0]):
            return listed, None
        with os.scandir(sweep) as found:
            return listed, {e.name for e in found if not e.name.startswith(".") and e.is_dir()}
    except OSError:
        return None


class Snapshot:
    """A sweep's runs as its index and files say now: `runs` (name -> signature, sorted), `info` (name ->
    status fields) and the big fields (BIG) through iter_field, each entry checked against its run's files;
    a run the index does not hold (or holds otherwise) is read from its files."""

    def __init__(
        self,
        sweep: str | Path,
        compute: dict[str, Callable[[str], tuple[object, bool]]] | None = None,
        read_info: Callable[[str], dict] | None = None,
        lazy: bool = False,
        unchecked_ok: bool = False,
        quick: bool = False,
    ):
        """`compute`: per big field, how to read it from a run dir's files: (value, whether it may be kept).
        `read_info`: how to read a run's status fields (info_of) from its files, where the index lacks them
        (None: they are not needed, as collect needs only rows). `lazy`: a run the index lacks is read only
        when asked for (entry), not every such run of the sweep now (a plan asks for its own runs).
        `unchecked_ok`: `read_info` leaves a budget= record's identity unchecked (status, show): an entry so
        marked answers (R37 F8: such runs were read from their files at every status until a plan).
        `quick` (`collect --quick`): no run is stat'ed where the index can answer (_trusted_runs)."""
        self.sweep = str(Path(sweep))
        self.dir = os.path.join(self.sweep, INDEX_DIR)
        self.compute = compute or {}
        self.read_info = read_info
        self.unchecked_ok = unchecked_ok
        self.non_runs: list[str] = []  # sub-dirs without status.json when listed
        self.fp = fingerprint() if enabled() else ""
        self._manifest = os.path.join(self.dir, MANIFEST)
        self._manifest_id = _file_id(self._manifest)  # the manifest read: a fold replaces only that one
        self._lines = None  # the line files, where a quick read parsed them first
        self._opened = None  # (the manifest, its run names, their signatures), where a quick read read them
        self._forgotten = False  # the manifest's rows are no longer taken (_forget_rows)
        self._damaged = False  # a read of the manifest failed (_damaged_now): a fold replaces it
        self._scan_started = time.time()  # before the stat pass: the manifest this read folds says it
        self.quick = quick and enabled()
        trusted = self._trusted_runs() if self.quick else None
        if trusted is None:
            self.quick = False  # the index cannot answer alone: every run is stat'ed
            try:  # the sweep dir's mtime before the listing: the next reader lists it again where it moved
                self._listed = (os.stat(self.sweep).st_mtime_ns, time.time())
            except OSError:
                self._listed = None
            self.runs = scan(self.sweep, self.non_runs)
        else:
            self.runs = trusted
        self.info: dict[str, dict] = {}
        self.fresh: dict[str, dict] = {}  # name -> big fields not in the manifest: {field: text} (_fresh)
        self._packed = _Packed()  # how a text computed here is held in `fresh`
        self.in_manifest: dict[str, set[str]] = {}  # name -> big fields the manifest holds for it
        self._mpos: dict[str, int] = {}  # name -> its row in the manifest, where that entry is the run's now
        self.touched: set[str] = set()  # runs whose entry this read learnt anew (lines, repairs): compact
        # lines to append (_repair_lines): ((run, sig, t), status fields, the big field computed or None), not
        # yet built: a first collect of 10^6 runs held a copy of each run's fields and row until the fold
        self.repairs: list[tuple] = []
        self.racy: set[str] = set()  # read in the clock tick of a write: used now, never stored
        self.lines_read: list[tuple[str, int]] = []  # (line file, its size as read)
        self.read_now: set[str] = set()  # runs read from their files by this snapshot
        self.line_count = 0
        self.line_runs: set[str] = set()  # the runs the lines read name
        self.misleading: set[str] = set()  # runs whose newest line a quick read would take, not their files
        self.scanned_at = 0.0  # when the manifest's reader began its stat pass (NewestLines.now)
        self.no_manifest = False  # none, or one of other code: the next finish writes one
        if enabled():
            self._read_manifest()
            self._read_lines()
        if read_info is not None and not lazy:
            self._read_missing()

    def _open_manifest(self, expect_id: tuple | None = None) -> tuple | None:
        """(its id, the manifest as a ParquetFile) read from an open file (another reader's fold renames a
        new one in meanwhile: this one reads on); None where none is readable, or where it is no longer the
        file `expect_id` names."""
        try:
            import pyarrow.parquet as pq

            fh = open(self._manifest, "rb")  # noqa: SIM115 (the ParquetFile reads it; closed with it)
        except (OSError, ImportError):
            return None
        try:
            found = _stat_id(os.fstat(fh.fileno()))
            if expect_id is None or found == expect_id:
                return found, pq.ParquetFile(fh, page_checksum_verification=CHECKSUMS)
        except (OSError, ValueError):
            pass
        fh.close()
        return None

    def _open_read(self):
        """The manifest as a ParquetFile, its id now `_manifest_id`; None where there is none readable."""
        opened = self._open_manifest()
        if opened is None:
            return None
        self._manifest_id, file = opened
        return file

    def _open_again(self):
        """The manifest this snapshot read (its rows' positions are `_mpos`), opened again for its rows; None
        where another reader's fold has replaced it since (R40 U2: its rows are at other positions): the
        snapshot then forgets the manifest's rows and fields, and reads those runs from their files."""
        opened = self._open_manifest(self._manifest_id)
        if opened is None:
            self._forget_rows()
            return None
        return opened[1]

    def _read_or_none(self, read: Callable[[], object]) -> object | None:
        """`read()` of the manifest (and what decodes it); None where that fails: damaged (_damaged_now)."""
        try:
            return read()
        except Exception as err:  # noqa: BLE001 (damaged bytes fail anywhere: in pyarrow's read or decoding,
            # in a text's UTF-8 or JSON, an index out of range: review W; a cache, so the files answer)
            self._damaged_now(err)
            return None

    def _damaged_now(self, err: Exception) -> None:
        """The manifest could not be read (review V: a flipped byte crashed collect): its rows are read from
        the runs' files, and this read's fold writes it anew from what it holds."""
        log.debug("petsweep: index of %s damaged (%s): read from the run dirs", self.sweep, err)
        self._damaged = True
        self._forget_rows()

    def _forget_rows(self) -> None:
        """Take no run's row or config from the manifest (its positions no longer hold, or it cannot be read
        again): read from files. Such a snapshot folds no more (R40 T1: its fold would drop the entries it
        forgot)."""
        self._forgotten = True
        self._mpos = {}
        self.in_manifest = {name: held - set(BIG) for name, held in self.in_manifest.items()}

    # the manifest's small columns: which runs it holds, and their status fields
    def _read_manifest(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:  # _trusted_runs read this manifest's signatures (and checked its code)
            file = opened[0]
        else:
            file = self._open_read()
            if file is None or manifest_meta(file, self.fp) is None:
                if file is not None:
                    file.close(force=True)
                self.no_manifest = True
                return
        self.scanned_at = _scanned_at(file.schema_arrow.metadata or {})
        with _closing(file):  # the manifest _trusted_runs read, if it did
            taken = self._read_or_none(lambda: self._take_entries(file, opened))
        if taken is None:  # damaged: read as none (what it gave dropped), so this read's fold writes it anew
            self.info, self.in_manifest, self._mpos = {}, {}, {}
            self.no_manifest = True

    def _take_entries(self, file, opened: tuple | None) -> bool:
        """The manifest's entries that hold for the runs' files as they are now: `_mpos`, `in_manifest` and
        (where read_info is given) `info`."""
        import numpy as np

        parse = self.read_info is not None  # collect needs no status fields: they stay text on disk
        columns = [*(["info"] if parse else []), *[f"has_{f}" for f in BIG]]
        if opened is None:
            columns += ["run", *SIG_FIELDS]
        table = file.read(columns=columns)
        if opened is None:
            names, stored = _signatures(table)
        else:
            _, names, stored = opened
        missing = (-2,) * len(SIG_FIELDS)  # no run has it: the run is gone
        if names == list(self.runs):  # the same runs (the usual case): their signatures in one array
            now = np.array(list(self.runs.values()), dtype=np.int64).reshape(-1, len(SIG_FIELDS))
        else:
            now = np.array([self.runs.get(n, missing) for n in names], dtype=np.int64)
        now = now.reshape(-1, len(SIG_FIELDS))
        valid = np.flatnonzero((stored == now).all(axis=1)) if len(names) else np.zeros(0, dtype=np.int64)
        flags = [table.column(f"has_{f}").to_numpy(zero_copy_only=False) for f in BIG]
        kinds = np.zeros(len(names), dtype=np.int64)
        for bit, flag in enumerate(flags):
            kinds |= flag.astype(np.int64) << bit
        helds = {
            k: frozenset(f for bit, f in enumerate(BIG) if k >> bit & 1) | ({"info"} if not parse else set())
            for k in range(1 << len(BIG))
        }
        infos = table.column("info").to_pylist() if parse else None
        mpos, in_manifest, info = self._mpos, self.in_manifest, self.info
        for i, kind in zip(valid.tolist(), kinds[valid].tolist()):
            name = names[i]
            mpos[name] = i
            in_manifest[name] = helds[kind]  # "info": kept as it is by compact, where not parsed
            if parse and infos[i] is not None:
                info[name] = json.loads(infos[i])
        return True

    def _trusted_runs(self) -> dict[str, tuple[int, ...]] | None:
        """Each run's signature as the index says it is now, no run stat'ed (status --quick's rule): the
        newest line's (NewestLines) where a run has one of this code, else the manifest's; a run with a line
        of other code, or one the manifest's listing did not hold, is stat'ed. None where the index cannot
        answer alone (no manifest of this code): every run is stat'ed then. What only a stat sees is not
        seen: an edit in place, a run written without its line (PETSWEEP_INDEX=0)."""

        file = self._open_read()
        if file is None:
            return None
        meta = manifest_meta(file, self.fp)
        listing = None
        if meta is not None and file.metadata.num_rows:
            listing = _listing_if_moved(self.sweep, meta)
        if listing is None:
            file.close(force=True)
            return None
        scanned_at = _scanned_at(meta)
        self._lines = list(_index_lines(self.dir))
        newest = NewestLines(self.fp)
        for _, _, _, lines in self._lines:
            for name, sig, line in lines:
                newest.add(name, sig, line)
        try:
            names, stored = _signatures(file.read(columns=["run", *SIG_FIELDS]))
        except Exception:  # noqa: BLE001 (damaged: every run is stat'ed, and _read_manifest finds it so)
            file.close(force=True)
            return None
        self._opened = (file, names, stored)  # _read_manifest reads its other columns from the same file
        runs = dict(zip(names, map(tuple, stored.tolist())))
        self._listed, names = listing
        if names is None:  # the listing is the manifest's: its sub-dirs without status.json may hold one now
            candidates = json.loads(meta.get(b"non_runs", b"[]"))
        else:  # a run dir came or went
            runs = {n: sig for n, sig in runs.items() if n in names}
            candidates = sorted(names - runs.keys())
        for name in candidates:  # a run its line names is taken below; the others are stat'ed
            if name in newest.sigs and name not in newest.foreign:
                runs[name] = newest.sigs[name]
                continue
            sig = signature(f"{self.sweep}/{name}")
            if sig is None:
                self.non_runs.append(name)
            else:
                runs[name] = sig
        for name in newest.foreign & runs.keys():  # this code cannot read that line: the run is stat'ed
            sig = signature(f"{self.sweep}/{name}")
            if sig is None:
                del runs[name]
            else:
                runs[name] = sig
        for name in newest.sigs.keys() & runs.keys() - newest.foreign:
            runs[name] = newest.now(name, runs[name], scanned_at)
        return dict(sorted(runs.items())) if candidates else runs

    def _read_lines(self) -> None:
        newest = None if self.quick else NewestLines(self.fp)  # what a quick read would take, where stat'ed
        for file, size, count, lines in _index_lines(self.dir) if self._lines is None else self._lines:
            self.lines_read.append((file, size))
            self.line_count += count
            for name, sig, line in lines:
                self.line_runs.add(name)
                if newest is not None:
                    newest.add(name, sig, line)
                if line.get("fp") != self.fp or self.runs.get(name) != sig:
                    continue
                big = {f: line.pop(f) for f in BIG if isinstance(line.get(f), str)}
                if "row" in big:
                    big["row"] = self._here(name, big["row"])
                for key in ("run", "sig", "fp", "t", *BIG):
                    line.pop(key, None)
                if line and (name not in self.info or _complete(line) or not _complete(self.info[name])):
                    self.info[name] = line  # never a line without the identity check over one with it
                    self.touched.add(name)
                if big:
                    self.fresh.setdefault(name, {}).update(big)
                    self.touched.add(name)
        if newest is not None:
            lined = newest.sigs.keys() & self.runs.keys() - newest.foreign  # (a quick read stats the foreign)
            flagged = [n for n in lined if not self._true(newest, n, self.runs[n])]
            self.misleading = {n for n in flagged if not self._true(newest, n, signature(self.run_path(n)))}

    def _true(self, newest: NewestLines, name: str, real: tuple | None) -> bool:
        """Whether a quick read would take the run's files as they are (`real`, their stat) over its newest
        line (R39 W2: a run dir restored with older mtimes, or a file rewritten in the tick of its line,
        leaves a line that outranks every later repair line; only a fold, which drops the line files read,
        ends it). A run flagged is stat'ed again (its line may have come after this read's scan: V1)."""
        if real is None:
            return True  # gone: nothing for a quick read to take
        entry = self._mpos.get(name) is not None and real == self.runs[name]  # the manifest's entry is `real`
        return newest.now(name, real, self.scanned_at if entry else 0.0) == real

    def run_path(self, name: str) -> str:
        """The run dir as this reader names it (as run_row builds `run_dir` from the path it is given)."""
        return str(Path(self.sweep) / name) if self.sweep in (".", "/") else f"{self.sweep}/{name}"

    def _here(self, name: str, text: str) -> str:
        """A line's row text with `run_dir` as this reader names the run (as run_row would build it here):
        the run's own line names its dir as the run was given it (perhaps relative, or another mount)."""
        path = self.run_path(name)
        if f'"run_dir":{json.dumps(path)},' in text:
            return text  # the usual case: no decoding
        row = json.loads(text)
        if not isinstance(row, dict) or "run_dir" not in row:
            return text
        row["run_dir"] = path
        return json.dumps(row, separators=(",", ":"))

    def _rebased(self, name: str, row: dict) -> dict:
        """A manifest row with `run_dir` as this reader names the run: the manifest holds it as the reader
        that wrote it named it (another path to the sweep, or the sweep before it was moved)."""
        if "run_dir" in row:
            row["run_dir"] = self.run_path(name)
        return row

    def _read_missing(self) -> None:
        now = time.time()
        for name, sig in self.runs.items():
            if name not in self.info or not _complete(self.info[name], self.unchecked_ok):
                self._read_info(name, sig, now)

    def _read_info(self, name: str, sig: tuple[int, ...], now: float) -> dict:
        READS["info"] += 1
        info = self.read_info(f"{self.sweep}/{name}")
        self.info[name] = info
        self.read_now.add(name)
        self.touched.add(name)
        if _racy(sig, now):
            self.racy.add(name)
        elif enabled():  # an unchecked entry is stored too: it answers the readers that leave it unchecked
            self.repairs.append(((name, sig, now), info, None))
        return info

    def entry(self, name: str) -> dict | None:
        """A run's status fields (info_of) for its files as they are now: its index entry, else read from its
        files (and kept for the index); None where the sweep dir holds no run of that name (no status.json).
        """
        sig = self.runs.get(name)
        if sig is None:
            return None
        info = self.info.get(name)
        if info is None or not _complete(info, self.unchecked_ok):
            info = self._read_info(name, sig, time.time())
        return info

    def _computed(self, name: str, field: str):
        """The field read from the run's files (and its line kept for the repair, where JSON holds it)."""
        READS[field] += 1
        value, keep = self.compute[field](f"{self.sweep}/{name}")
        self.touched.add(name)
        sig = self.runs[name]
        if self.quick:  # its signature was trusted, not stat'ed: the value is kept under it only where the
            # run's files are still it (else its entry's status fields are an older line's: R39 Z1)
            keep = keep and signature(f"{self.sweep}/{name}") == sig
        if keep and value is not None and _plain(value) and enabled() and not _racy(sig, time.time()):
            text = json.dumps(value, separators=(",", ":"))
            self.fresh.setdefault(name, {})[field] = self._packed.pack(text)
            info = self.info.get(name, {}) if name not in self.racy else {}
            self.repairs.append(((name, sig, time.time()), info, field))
        return value

    def _fresh(self, name: str, field: str) -> str | None:
        """The JSON text of a big field this read learnt (a line's, or computed: held packed), if any."""
        text = self.fresh.get(name, {}).get(field)
        return text if text is None else self._packed.unpack(text)

    def iter_field(self, field: str) -> Iterator[tuple[str, object]]:
        """(name, value) of every run in name order: from a line or the manifest where they hold it for the
        run's files as they are, else computed from the files (self.compute[field]). One manifest batch is
        in memory at a time."""
        from_manifest = self._manifest_field(field)
        pending = next(from_manifest, None)
        for name in self.runs:
            while pending is not None and pending[0] < name:
                pending = next(from_manifest, None)
            text = self._fresh(name, field)
            if text is None and field in self.in_manifest.get(name, ()) and pending and pending[0] == name:
                text = pending[1]
            yield name, json.loads(text) if text is not None else self._computed(name, field)

    def _manifest_field(self, field: str) -> Iterator[tuple[str, str]]:
        if not any(field in held for held in self.in_manifest.values()):
            return
        file = self._open_again()
        if file is None:
            return
        with _closing(file):
            try:
                yield from self._fields_of(file, field)
            except Exception as err:  # noqa: BLE001 (damaged: the rest are read from their files)
                self._damaged_now(err)

    def _fields_of(self, file, field: str) -> Iterator[tuple[str, str]]:
        if field == "row":  # stored column-wise (row_columns): rebuilt a batch at a time
            columns = [c for c in file.schema_arrow.names if c.startswith(ROW_PREFIXES)]
            for batch in file.iter_batches(batch_size=BATCH, columns=["run", "layout", *columns]):
                names, layouts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
                cells = {c[2:]: _decoded(batch.column(c)) for c in columns}
                for i, (name, layout) in enumerate(zip(names, layouts)):
                    if layout is not None:
                        row = self._rebased(name, {k: cells[k][i] for k in json.loads(layout)})
                        yield name, json.dumps(row, separators=(",", ":"))
            return
        for batch in file.iter_batches(batch_size=BATCH, columns=["run", field]):
            names, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
            yield from ((n, t) for n, t in zip(names, texts) if t is not None)

    def row_columns(self) -> RowBlock:
        """Every run's row (`row` field, collect's table), column-wise and in name order: runs the manifest
        holds as they are now come from its columns (each column decoded in bulk, each distinct JSON value
        once), the others from their lines or computed from their files. Cells are what pd.DataFrame(rows)
        reads of a list of row dicts: a key a row lacks is NaN."""

        names = list(self.runs)
        held = [i for i, name in enumerate(names) if self._row_held(name)]
        file = self._open_again() if held else None
        block = None
        if file is not None:
            with _closing(file):
                block = self._read_or_none(lambda: self._held_rows(file, names, held))
        if block is None:  # (none held, the manifest replaced since it was read, or damaged: read anew)
            block = RowBlock(len(names))
        for i, name in enumerate(names):
            if i < len(names) and not self._row_held(name):
                text = self._fresh(name, "row")
                row = json.loads(text) if text is not None else self._computed(name, "row")
                block.add_row(i, row)
        return block

    def _repair_lines(self) -> Iterator[dict]:
        """The repairs as the lines `append` writes."""
        for (name, sig, at), info, field in self.repairs:
            line = {"run": name, "sig": list(sig), "t": at, **info}
            if field is not None:
                line[field] = self._fresh(name, field)
            yield line

    def _held_rows(self, file, names: list[str], held: list[int]) -> RowBlock:
        """A block of the rows the manifest holds for the runs at `held` (their places in `names`)."""
        import numpy as np

        block = RowBlock(len(names))
        columns = [c for c in file.schema_arrow.names if c.startswith(ROW_PREFIXES)]
        table = file.read(columns=["layout", *columns]).take([self._mpos[names[i]] for i in held])
        block.add_columns(np.asarray(held, dtype=np.int64), table)
        if "run_dir" in block.columns:  # as this reader names each run (_rebased)
            paths = block.columns["run_dir"]
            for i in held:
                if isinstance(paths[i], str):
                    paths[i] = self.run_path(names[i])
        return block

    def _row_held(self, name: str) -> bool:
        return "row" not in self.fresh.get(name, {}) and "row" in self.in_manifest.get(name, ())

    def rows_of(self, names: list[str]) -> list[dict]:
        """The rows of some runs (collect's `row` field), in the order given, as row_columns reads them: from
        the manifest or a line where they hold the run's files as they are, else computed from its files.
        Only the manifest's row groups that hold them are read (a re-collect of the runs changed since)."""
        held = self._manifest_rows([n for n in names if self._row_held(n)])
        out = []
        for name in names:
            text = self._fresh(name, "row")
            if name in held:
                out.append(held[name])
            else:
                out.append(json.loads(text) if text is not None else self._computed(name, "row"))
        return out

    def _manifest_rows(self, names: list[str]) -> dict[str, dict]:
        file = self._open_again() if names else None
        if file is None:
            return {}
        with _closing(file):
            return self._read_or_none(lambda: self._rows_at(file, names)) or {}

    def _rows_at(self, file, names: list[str]) -> dict[str, dict]:
        columns = ["run", "layout", *(c for c in file.schema_arrow.names if c.startswith(ROW_PREFIXES))]
        starts, at = [], 0
        for group in range(file.metadata.num_row_groups):
            starts.append(at)
            at += file.metadata.row_group(group).num_rows
        wanted = {self._mpos[n] for n in names}
        groups = sorted({bisect.bisect_right(starts, pos) - 1 for pos in wanted})
        rows = {}
        for group in groups:
            for i, cells in enumerate(file.read_row_group(group, columns=columns).to_pylist()):
                if starts[group] + i in wanted:
                    row = {k: _cell(cells, k) for k in json.loads(cells["layout"])}
                    rows[cells["run"]] = self._rebased(cells["run"], row)
        return rows

    def finish(self, compact: bool | None = None) -> None:
        """Store what this read learnt: fold everything into a new manifest (`compact`; by default when
        lines have piled up (`piled`), or there is no manifest), else append the repairs as lines. Never
        raises: a sweep dir this process cannot write is read the same way next time."""
        if not enabled():
            return
        try:
            lines = self.line_count + len(self.repairs)
            if compact is None:
                named = len(self.line_runs | {repair[0][0] for repair in self.repairs})
                compact = self.no_manifest and bool(self.runs) or piled(named, lines, len(self.runs))
                compact = compact or bool(self.misleading) or self._damaged  # (misleading: lines a quick
                # read would take wrongly)
            if compact and (lines or self.no_manifest or self._damaged):
                self.compact()
            elif self.repairs:
                append(self.sweep, self._repair_lines())
            self.repairs = []
        except Exception as err:  # noqa: BLE001 (a cache: the answer was already given)
            log.debug("petsweep: index of %s not updated: %s", self.sweep, err)

    def compact(self) -> None:
        """Write every entry into a new manifest (a temporary file, renamed over the old one), then unlink
        the line files read: a crash between leaves lines the new manifest already holds, read the same.
        Entries the old manifest holds for the runs' files as they are, and that this read learnt nothing
        new of, are copied column by column; rows are stored column-wise (RowBlock)."""
        import pyarrow.parquet as pq

        if self._forgotten and not self._damaged:  # after its own fold or another reader's, or a failed open
            raise _Superseded(self._manifest)
        os.makedirs(self.dir, exist_ok=True)
        old = None
        if self._mpos:
            file = self._open_again()
            if file is None:  # another reader folded since this one read it (and its entries may be newer)
                raise _Superseded(self._manifest)
            with _closing(file):
                old = self._read_or_none(lambda: file.read().replace_schema_metadata(None))
            # (None: damaged, its entries forgotten: every run's entry is what this read holds)
        kept, info_only, changed = [], [], []
        for name in self.runs:
            pos = self._mpos.get(name)
            if pos is None or name in self.racy or name in self.fresh:
                changed.append(name)  # rebuilt from what this read holds
            elif name in self.touched:
                info_only.append(name)  # its status fields are new; the rest is the manifest's
            else:
                kept.append(pos)
        parts = [
            old.take(kept) if old is not None and kept else None,
            self._info_table(info_only, old),
        ]
        parts = [t for t in parts if t is not None]
        mixed = len(parts) + bool(changed) > 1  # rows of several sources: sorted by run again
        for at in range(0, len(changed), FOLD_CHUNK):  # 10^6 runs read anew: one chunk of row dicts at once
            parts.append(self._changed_table(changed[at : at + FOLD_CHUNK], old))
        table = _unify(parts) if len(parts) > 1 else parts[0] if parts else _empty_manifest()
        if mixed:
            table = table.sort_by("run")
        scanned = self.scanned_at if self.quick else self._scan_started  # a quick read stat'ed no run
        meta = {"fingerprint": self.fp, "scanned_at": repr(scanned), **self._listing_meta()}
        meta["columns"] = _columns_sig(table.column_names)
        table = table.replace_schema_metadata(meta)
        from petsweep.records.files import replace_file

        def not_superseded() -> None:  # R39 Z3: another reader folded meanwhile (its entries may be newer)
            if _file_id(self._manifest) != self._manifest_id:
                raise _Superseded(self._manifest)

        replace_file(
            self._manifest,
            lambda fh: pq.write_table(table, fh, row_group_size=BATCH, write_page_checksum=CHECKSUMS),
            mode=0o644,
            before_rename=not_superseded,
        )
        self._manifest_id = _file_id(self._manifest)
        self._forget_rows()  # the new manifest's rows sit at other positions
        self._damaged = False
        for file, size in self.lines_read:
            with contextlib.suppress(OSError):
                if os.stat(file).st_size == size:  # else lines came while folding (R37 W1): read next time
                    os.unlink(file)
        self.lines_read = []
        self.line_count = 0
        self.line_runs = set()
        self.no_manifest = False

    def _listing_meta(self) -> dict[str, str]:
        """What lets a `status` read skip listing the sweep dir (StatusScan): the dir's mtime when this
        snapshot listed it and its sub-dirs that held no status.json then. Left out where the listing may have
        raced a change in the same clock tick, or where those sub-dirs are many."""
        if self._listed is None or len(self.non_runs) > LISTED_NON_RUNS:
            return {}
        mtime, at = self._listed
        if at - mtime / 1e9 < RACY_S:
            return {}
        return {"sweep_mtime_ns": str(mtime), "non_runs": json.dumps(self.non_runs)}

    def _info_table(self, names: list[str], old):
        """The manifest rows of runs whose status fields alone are new: copied, with the new `info`."""
        import pyarrow as pa

        if not names:
            return None
        part = old.take([self._mpos[n] for n in names])
        texts = [json.dumps(self.info[n], separators=(",", ":")) if n in self.info else None for n in names]
        old_texts = part.column("info").to_pylist()
        texts = [t if t is not None else o for t, o in zip(texts, old_texts)]
        at = part.schema.get_field_index("info")
        part = part.set_column(at, "info", pa.array(texts, type=MANIFEST_TYPES["info"]))
        for key, array in _status_arrays([self.info.get(n) for n in names], old_texts).items():
            part = part.set_column(part.schema.get_field_index(key), key, array)
        return part

    def _changed_table(self, names: list[str], old):
        """The manifest rows of runs whose entries are (re)written from what this read holds."""
        import pyarrow as pa

        if not names:
            return None
        olds = {}
        if old is not None:
            at = [self._mpos[n] for n in names if n in self._mpos]
            if at:
                part = old.take(at).to_pylist()
                olds = {row["run"]: row for row in part}
        data: dict[str, list] = {
            k: [] for k in ("run", *SIG_FIELDS, "info", "config", "has_config", "has_row")
        }
        rows = []
        for name in names:
            before = olds.get(name, {})
            data["run"].append(name)
            for field, value in zip(SIG_FIELDS, self.runs[name]):
                data[field].append(value)
            if name in self.racy:
                info = None
            elif name in self.info:
                info = json.dumps(self.info[name], separators=(",", ":"))
            else:
                info = before.get("info")
            data["info"].append(info)
            config = self._fresh(name, "config")
            if config is None and "config" in self.in_manifest.get(name, ()):
                config = before.get("config")
            data["config"].append(config)
            data["has_config"].append(config is not None)
            text = self._fresh(name, "row")
            if text is not None:
                rows.append(json.loads(text))
            elif "row" in self.in_manifest.get(name, ()) and before.get("layout") is not None:
                rows.append({k: _cell(before, k) for k in json.loads(before["layout"])})
            else:
                rows.append(None)
            data["has_row"].append(rows[-1] is not None)
        arrays = {k: pa.array(v, type=MANIFEST_TYPES[k]) for k, v in data.items()}
        arrays.update(_status_arrays([None] * len(names), data["info"]))
        arrays.update(_row_arrays(rows, old.schema if old is not None else None))
        return pa.table(arrays)


class _Packed:
    """JSON texts held deflated with a preset dictionary, the first text packed: a sweep's rows share most of
    their keys and values, so a 3.5 KB row packs into ~0.2 KB in ~16 us (#25: a first collect held every
    run's row text until the fold, ~3.5 GB at 10^6 runs). A str is held as it is."""

    def __init__(self):
        self.zdict: bytes | None = None

    def pack(self, text: str) -> bytes:
        data = text.encode()
        if self.zdict is None:
            self.zdict = data[-32768:]  # (deflate's window)
        packer = zlib.compressobj(1, zdict=self.zdict)
        return packer.compress(data) + packer.flush()

    def unpack(self, held: str | bytes) -> str:
        if isinstance(held, str):
            return held
        unpacker = zlib.decompressobj(zdict=self.zdict)
        return (unpacker.decompress(held) + unpacker.flush()).decode()


class StatusScan:
    """A sweep's runs and their status fields for `petsweep status`, a manifest row group at a time, with
    memory flat in the number of runs (#25): the typed STATUS_COLUMNS and the signatures are compared in bulk
    (numpy); a run's `info` JSON is decoded only where a caller prints its line (`info`). Runs whose entry is
    not the run's now come from their lines or files, as Snapshot reads them (and are repaired by a line).

    The sweep dir is listed only where its mtime moved since the manifest's listing (a run dir added, removed
    or renamed: the manifest's metadata holds the mtime and the sub-dirs that held no status.json then, each
    stat'ed). Each run is stat'ed by name: status.json, result.json and config.yaml (every write petsweep
    makes renames a file in, giving it a new inode and mtime; an edit in place moves the file's mtime), and
    the run dir itself (a renamed-in progress.json or error.txt) only for a run whose entry is not COMPLETED
    of its own identity: a COMPLETED line reads status.json, result.json and config.yaml only.

    `quick` (`petsweep status --quick`): no run is stat'ed. The manifest's entry answers for a run, or the
    newest line of this code written since (by the status.json mtime it recorded, then its time); a run with
    a line of other code is stat'ed; the sweep dir's mtime still says whether a run dir came or went, and a
    listing then. What only a stat sees is not seen: an edit in place, a run written by a process that
    wrote no line (PETSWEEP_INDEX=0), a crash between status.json and its line. At 10^6 runs
    the three stats a run are most of a verified status (~3.5 us each on this project's VM, far more on a
    cluster's shared filesystem).

    `usable` is False where this cannot answer (no manifest of this code; lines piled past the compaction
    threshold): Snapshot reads it then, and compacts."""

    COLUMNS = ("run", *SIG_FIELDS, *STATUS_COLUMNS, "info")

    def __init__(
        self,
        sweep: str | Path,
        read_info: Callable[[str], dict],
        quick: bool = False,
        unchecked_ok: bool = False,
    ):
        self.sweep = str(Path(sweep))
        self.dir = os.path.join(self.sweep, INDEX_DIR)
        self.read_info = read_info
        self.quick = quick
        self.unchecked_ok = unchecked_ok  # as Snapshot's
        self.fp = fingerprint()
        self.repairs: list[dict] = []
        self.usable = False
        self.lines: dict[str, list[tuple[tuple, dict]]] = {}  # name -> (signature, info) of its lines
        self.newest = NewestLines(self.fp)  # quick: a run's newest line (runs with one of other code stat'ed)
        self.scanned_at = 0.0  # when the manifest's reader began its stat pass (NewestLines.now)
        self.timing: dict = {}  # whether this scan stats in threads (_stats decides at its first batch)
        self.listed: set[str] | None = None  # the sweep dir's sub-dirs, where _unlisted listed it
        self.line_count = 0
        if not enabled():
            return
        try:
            import pyarrow.parquet as pq

            self.file = pq.ParquetFile(os.path.join(self.dir, MANIFEST), page_checksum_verification=CHECKSUMS)
        except (OSError, ValueError, ImportError):
            return
        meta = manifest_meta(self.file, self.fp)
        if meta is None:
            return
        if not set(self.COLUMNS) <= set(self.file.schema_arrow.names) or not self.file.metadata.num_rows:
            return
        self.scanned_at = _scanned_at(meta)
        self._read_lines()
        if piled(len(self.lines), self.line_count, self.file.metadata.num_rows):
            return  # Snapshot folds them into a new manifest
        try:
            self.extras = self._unlisted(meta)
        except Exception as err:  # noqa: BLE001 (a damaged manifest: Snapshot reads the files, folds anew)
            log.debug("petsweep: index of %s damaged (%s): read from the run dirs", self.sweep, err)
            return
        self.usable = True

    def _read_lines(self) -> None:
        for _, _, count, lines in _index_lines(self.dir):
            self.line_count += count
            for name, sig, line in lines:
                if line.get("fp") != self.fp:
                    self.newest.foreign.add(name)
                    continue
                fields = {k: v for k, v in line.items() if k not in ("run", "sig", "fp", "t", *BIG)}
                if fields:  # a line of status fields
                    self.newest.add(name, sig, line)
                    self.lines.setdefault(name, []).append((sig, fields))

    def _unlisted(self, meta: dict) -> list[str]:
        """The runs the manifest does not hold (sorted): none where the sweep dir's mtime is the manifest's
        listing's but the sub-dirs that held no status.json then and hold one now; else every sub-dir with a
        status.json the manifest does not name (the only case that holds every name in memory)."""
        listing = _listing_if_moved(self.sweep, meta)
        if listing is None:
            return []
        names = listing[1]
        if names is None:
            non_runs = json.loads(meta.get(b"non_runs", b"[]"))
            return sorted(n for n in non_runs if os.path.exists(f"{self.sweep}/{n}/status.json"))
        self.listed = names
        held = set()
        for batch in self.file.iter_batches(batch_size=BATCH, columns=["run"]):
            held.update(batch.column(0).to_pylist())
        return sorted(n for n in names if n not in held and os.path.exists(f"{self.sweep}/{n}/status.json"))

    def batches(self) -> Iterator[StatusBatch]:
        """Every run of the sweep in name order, a manifest row group (and the unlisted runs among it) at a
        time."""

        extras, at = self.extras, 0
        fd = os.open(self.sweep, os.O_RDONLY)
        pool = None
        try:
            if STAT_THREADS > 1:
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(STAT_THREADS)
            for batch, names in self._read_batches():
                upto = at
                while upto < len(extras) and (not names or extras[upto] < names[-1]):
                    upto += 1
                out = self._batch(batch, names, fd, pool, extras[at:upto])
                at = upto
                if len(out.names):
                    yield out
            if at < len(extras):
                yield self._batch(None, [], fd, pool, extras[at:])
        finally:
            os.close(fd)
            if pool is not None:
                pool.shutdown()

    def _read_batches(self) -> Iterator[tuple]:
        """The manifest's row groups (and their run names); Damaged where it cannot be read (review W: a
        flipped byte crashed `status` with pyarrow's error)."""
        batches = self.file.iter_batches(batch_size=BATCH, columns=list(self.COLUMNS))
        rows = 0
        while True:
            try:
                batch = next(batches, None)
                if batch is None:
                    break
                names = batch.column(0).to_pylist()
            except Exception as err:  # noqa: BLE001 (damaged bytes fail anywhere in pyarrow's read)
                raise Damaged(f"{self.sweep}: {err}") from err
            rows += len(names)
            yield batch, names
        if rows != self.file.metadata.num_rows:  # a damaged page header can end the read early, silently
            raise Damaged(f"{self.sweep}: {rows} of the manifest's {self.file.metadata.num_rows} runs read")

    def _batch(self, batch, names: list[str], fd: int, pool, extras: list[str]) -> StatusBatch:
        import numpy as np

        n = len(names)
        if batch is not None and n:
            stored = np.column_stack([_numpy(batch.column(f)) for f in SIG_FIELDS])
            state = _numpy(batch.column(STATUS_COLUMNS[0]))
            complete = _numpy(batch.column(STATUS_COLUMNS[1])).astype(bool)
            stale = _numpy(batch.column(STATUS_COLUMNS[2])).astype(bool)
            texts = batch.column("info")
        else:
            stored = np.zeros((0, len(SIG_FIELDS)), dtype=np.int64)
            state, complete, stale = (np.zeros(0, dtype=object), np.zeros(0, bool), np.zeros(0, bool))
            texts = None
        own = complete & (state == "COMPLETED") & ~stale  # a COMPLETED line needs no stat of the dir
        has_line = np.fromiter((name in self.lines for name in names), bool, n) if self.lines else None
        full = ~own if has_line is None else ~own | has_line
        now = self._trusted(names, stored) if self.quick else _stats(fd, names, full, pool, self.timing)
        gone = now[:, 1] == -2
        same = (stored[:, 1:] == now[:, 1:]).all(axis=1) & (~full | (stored[:, 0] == now[:, 0]))
        ok = same & complete & ~gone  # the manifest's typed entry answers
        infos: dict[int, dict] = {}
        unsure = np.flatnonzero(~gone & (~ok | (has_line if has_line is not None else False)))
        for i in unsure.tolist():
            sig = tuple(now[i].tolist())
            if not full[i]:
                sig = signature(f"{self.sweep}/{names[i]}")
                if sig is None:
                    gone[i] = True
                    continue
            held = None  # the manifest's entry, where it is the run's files' now (an incomplete one)
            if same[i] and texts is not None and texts[i].is_valid:
                held = json.loads(texts[i].as_py())
            info = self._resolve(names[i], sig, held)
            if info is None:
                gone[i] = True
            else:
                infos[i] = info
                ok[i] = False
        keep = ~gone
        out = StatusBatch(names, state, stale, ok, texts, infos, keep)
        for name in extras:
            sig = signature(f"{self.sweep}/{name}")
            info = self._resolve(name, sig, None) if sig is not None else None
            if info is not None:
                out.add(name, info)
        return out

    def _trusted(self, names: list[str], stored):
        """The signatures a quick read takes for the runs' now (no stat): the newest line's where a run has
        one, else the manifest's; gone (-2) where a listing of the sweep dir lacks the run. A run with a
        line of other code (a worker on another commit) is stat'ed: this code cannot read that line."""
        now = stored.copy()
        for i, name in enumerate(names):
            if name in self.newest.foreign:
                sig = signature(f"{self.sweep}/{name}")
                now[i] = sig if sig is not None else (-1, -2, *([-1] * (len(SIG_FIELDS) - 2)))
            elif name in self.newest.sigs:
                now[i] = self.newest.now(name, tuple(stored[i].tolist()), self.scanned_at)
            if self.listed is not None and name not in self.listed:
                now[i, 1] = -2
        return now

    def _resolve(self, name: str, sig: tuple | None, held: dict | None) -> dict | None:
        """A run's status fields where the manifest's typed entry does not answer: the manifest's entry
        (`held`, where its signature is the run's), then its lines of that signature, as Snapshot takes
        them; else read from its files (and a repair line kept)."""
        if sig is None:
            return None
        info = held
        for line_sig, line in self.lines.get(name, ()):
            if line_sig == sig and (info is None or _complete(line) or not _complete(info)):
                info = line
        if info is not None and _complete(info, self.unchecked_ok):
            return info
        READS["info"] += 1
        now = time.time()
        info = self.read_info(f"{self.sweep}/{name}")
        if not _racy(sig, now):
            self.repairs.append({"run": name, "sig": list(sig), "t": now, **info})
        return info

    def finish(self) -> None:
        """Append the repairs as lines (never raises: a cache)."""
        try:
            append(self.sweep, self.repairs)
        except Exception as err:  # noqa: BLE001
            log.debug("petsweep: index of %s not updated: %s", self.sweep, err)
        self.repairs = []


class StatusBatch:
    """Runs of a StatusScan in name order: `names`; where `ok`, the manifest's typed `state` and `stale`
    answer (and `info(i)` decodes its JSON), else `infos[i]` holds the run's status fields; `keep` is False
    for a run that is gone. Runs the manifest does not hold are appended (add) and come after in `order`."""

    def __init__(self, names, state, stale, ok, texts, infos, keep):
        self.names, self.state, self.stale, self.ok = names, state, stale, ok
        self.texts, self.infos, self.keep = texts, infos, keep
        self.extra: list[tuple[str, dict]] = []

    def add(self, name: str, info: dict) -> None:
        self.extra.append((name, info))

    def info(self, i: int) -> dict:
        if i in self.infos:
            return self.infos[i]
        return json.loads(self.texts[i].as_py())

    def holding(self, text: str):
        """Whether each run's manifest entry holds `text` in its JSON (found without decoding it)."""
        import numpy as np
        import pyarrow.compute as pc

        if self.texts is None or not len(self.names):
            return np.zeros(len(self.names), dtype=bool)
        return _numpy(pc.fill_null(pc.match_substring(self.texts, text), False))


def _numpy(column):
    """An arrow column as numpy from its buffers (to_numpy of an array with nulls, or of booleans, imports
    pandas: ~0.6 s): int64 as it is, booleans unpacked, dictionary-encoded strings decoded (object; None where
    null)."""
    import numpy as np
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n, offset = len(column), column.offset
    if pa.types.is_dictionary(column.type):
        words = np.empty(len(column.dictionary) + 1, dtype=object)
        words[:-1] = column.dictionary.to_pylist()
        codes = _numpy(column.indices).astype(np.int64)
        codes[~_valid(column)] = len(words) - 1
        return words[codes]
    if pa.types.is_boolean(column.type):
        bits = np.frombuffer(column.buffers()[1], dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little")[offset : offset + n].astype(bool)
    dtype = np.dtype(column.type.to_pandas_dtype())
    return np.frombuffer(column.buffers()[1], dtype=dtype)[offset : offset + n]


def _valid(column):
    """Where an arrow array is not null, as a numpy bool array."""
    import numpy as np

    if column.null_count == 0:
        return np.ones(len(column), dtype=bool)
    bits = np.frombuffer(column.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[column.offset : column.offset + len(column)].astype(bool)


def _stats(fd: int, names: list[str], full, pool, timing: dict):
    """Signatures (SIG_FIELDS) of runs in the dir `fd`: the run dir's mtime only where `full`, else -3;
    status.json's -2 where the run is gone. `timing`: the scan's; its first call stats STAT_PROBE runs alone
    and times them, and where a stat took under QUICK_STAT_S (the kernel's cache) every batch of the scan is
    stat'ed in this thread, else in `pool`'s (a stat that waits on the disk or a file server)."""
    import numpy as np

    out = np.full((len(names), len(SIG_FIELDS)), -1, dtype=np.int64)
    flags = full.tolist()

    def part(lo: int, hi: int) -> None:
        stat = os.stat
        for i in range(lo, hi):
            name = names[i]
            try:
                status = stat(name + "/status.json", dir_fd=fd)
                folder = stat(name, dir_fd=fd).st_mtime_ns if flags[i] else -3
            except OSError:
                out[i, 1] = -2
                continue
            row = [folder, status.st_mtime_ns, status.st_size, status.st_ino, -1, -1, -1, -1]
            for k, file in ((4, "/result.json"), (6, "/config.yaml")):
                try:
                    found = stat(name + file, dir_fd=fd)
                    row[k], row[k + 1] = found.st_mtime_ns, found.st_size
                except OSError:
                    pass
            out[i] = row

    start = 0
    if pool is not None and "threads" not in timing and names:
        start = min(STAT_PROBE, len(names))
        started = time.perf_counter()
        part(0, start)  # 3 stats a run at least
        timing["threads"] = time.perf_counter() - started >= QUICK_STAT_S * 3 * start
    spans = [(lo, min(lo + STAT_SPAN, len(names))) for lo in range(start, len(names), STAT_SPAN)]
    if pool is None or not timing.get("threads") or len(spans) < 2:
        for lo, hi in spans:
            part(lo, hi)
    else:
        for _ in pool.map(lambda span: part(*span), spans):
            pass
    return out


ROW_PREFIXES = ("r:", "j:")  # a row column: typed ("r:", one Python type: int, float, str or bool) or JSON


def _manifest_types():
    import pyarrow as pa

    return {
        "run": pa.string(),
        **{f: pa.int64() for f in SIG_FIELDS},
        "info": pa.string(),
        "config": pa.large_string(),
        "has_config": pa.bool_(),
        "has_row": pa.bool_(),
        "layout": pa.dictionary(pa.int32(), pa.string()),
        **dict(zip(STATUS_COLUMNS, (pa.dictionary(pa.int32(), pa.string()), pa.bool_(), pa.bool_()))),
    }


def _status_arrays(infos: list[dict | None], texts: list[str | None]) -> dict:
    """STATUS_COLUMNS of entries: each an info dict, or None where only its JSON text (or nothing) is held."""
    import pyarrow as pa

    states, complete, stale = [], [], []
    for info, text in zip(infos, texts):
        if info is None and text is not None:
            info = json.loads(text)
        state = info.get("state") if isinstance(info, dict) else None
        states.append(state if isinstance(state, str) else None)
        complete.append(isinstance(state, str) and _complete(info))
        stale.append(isinstance(info, dict) and info.get("stale") is not None)
    return {
        STATUS_COLUMNS[0]: pa.array(states, type=pa.string()).dictionary_encode(),
        STATUS_COLUMNS[1]: pa.array(complete, type=pa.bool_()),
        STATUS_COLUMNS[2]: pa.array(stale, type=pa.bool_()),
    }


class _Types(dict):
    def __missing__(self, key):
        self.update(_manifest_types())
        return self[key]


MANIFEST_TYPES = _Types()
_KINDS = {int: "int64", float: "float64", str: "string", bool: "bool"}


def _empty_manifest():
    import pyarrow as pa

    return pa.table({k: pa.array([], type=MANIFEST_TYPES[k]) for k in _manifest_types()})


def _cell(row: dict, key: str):
    """A row cell as the manifest's pylist row holds it (typed, or JSON text)."""
    if f"r:{key}" in row:
        return row[f"r:{key}"]
    text = row.get(f"j:{key}")
    return None if text is None else json.loads(text)


def _row_arrays(rows: list[dict | None], old_schema) -> dict:
    """Row dicts as manifest columns: `layout` (each row's keys in order, JSON; null: no row) and a column per
    key, typed where every value of it (here and in the old manifest) is of one of _KINDS' types, else JSON
    text; strings and JSON dictionary-encoded (each distinct value stored and decoded once)."""
    import pyarrow as pa

    layouts = [None if row is None else json.dumps(list(row)) for row in rows]
    out = {"layout": pa.array(layouts, type=pa.string()).dictionary_encode()}
    keys = dict.fromkeys(k for row in rows if row for k in row)
    old_names = set(old_schema.names) if old_schema is not None else set()
    for key in keys:
        values = [row.get(key) if row else None for row in rows]
        kinds = {type(v) for v in values if v is not None}
        kind = _KINDS.get(next(iter(kinds))) if len(kinds) == 1 else None
        if f"j:{key}" in old_names or (
            f"r:{key}" in old_names
            and kind is not None
            and not _same_kind(old_schema.field(f"r:{key}").type, kind)
        ):
            kind = None  # JSON where the old manifest holds it so, or holds another type
        if kind is None:
            texts = [None if v is None else json.dumps(v, separators=(",", ":")) for v in values]
            out[f"j:{key}"] = pa.array(texts, type=pa.string()).dictionary_encode()
            continue
        try:
            array = pa.array(values, type=getattr(pa, "bool_" if kind == "bool" else kind)())
        except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
            texts = [None if v is None else json.dumps(v, separators=(",", ":")) for v in values]
            out[f"j:{key}"] = pa.array(texts, type=pa.string()).dictionary_encode()
            continue
        out[f"r:{key}"] = array.dictionary_encode() if kind == "string" else array
    return out


def _same_kind(arrow_type, kind: str) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    names = {"string": "string", "int64": "int64", "float64": "double", "bool": "bool"}
    return str(arrow_type) == names[kind]


def _unify(parts: list):
    """Manifest parts as one table: a row column typed in one part and JSON (or another type) in another
    becomes JSON in both; a part's column that holds only nulls takes the others' type (a chunk of runs
    whose cells of that key are all None types it as JSON: _row_arrays); columns a part lacks are nulls."""
    import pyarrow as pa

    kinds: dict[str, dict] = {}  # key -> {(prefix, value type): arrow type}, of the columns holding a value
    nulls: dict[str, dict] = {}  # the same, of the columns holding only nulls
    for part in parts:
        for field in part.schema:
            if field.name.startswith(ROW_PREFIXES):
                value_type = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
                empty = part.num_rows and part.column(field.name).null_count == part.num_rows
                found = (nulls if empty else kinds).setdefault(field.name[2:], {})
                found[(field.name[:2], str(value_type))] = field.type
    as_json = {key for key, found in kinds.items() if len(found) > 1}
    as_json |= {key for key, found in nulls.items() if key not in kinds and len(found) > 1}
    retyped = {
        key: next(iter(found.items()))
        for key, found in kinds.items()
        if len(found) == 1 and nulls.get(key, {}).keys() - found.keys()
    }
    fixed = []
    for part in parts:
        for key in as_json:
            for prefix in ROW_PREFIXES:
                name = f"{prefix}{key}"
                if name in part.column_names:
                    cells = part.column(name).to_pylist()
                    if prefix == "r:":
                        cells = [None if v is None else json.dumps(v, separators=(",", ":")) for v in cells]
                    array = pa.array(cells, type=pa.string()).dictionary_encode()
                    part = part.drop_columns([name]).append_column(f"j:{key}", array)
        for key, ((prefix, _), arrow_type) in retyped.items():
            other = [f"{p}{key}" for p in ROW_PREFIXES if p != prefix and f"{p}{key}" in part.column_names]
            name = f"{prefix}{key}"
            if name in part.column_names and part.schema.field(name).type != arrow_type:
                other.append(name)  # (the same prefix, another type: r:int64 beside r:double)
            if other:  # only nulls (as kinds found it): the same nulls, of the others' type
                part = part.drop_columns(other).append_column(name, pa.nulls(part.num_rows, type=arrow_type))
        fixed.append(part)
    return pa.concat_tables(fixed, promote_options="default").combine_chunks()


def _decoded(column):
    """A manifest row column as a numpy object array of the row's values (None where null)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        chunks = [_decoded(c) for c in column.chunks]
        return np.concatenate(chunks) if chunks else np.empty(0, dtype=object)
    nulls = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
    if pa.types.is_dictionary(column.type):
        words = column.dictionary.to_numpy(zero_copy_only=False)
        values = np.empty(len(words), dtype=object)
        values[:] = list(words)
        if column.dictionary.null_count:
            values[column.dictionary.is_null().to_numpy(zero_copy_only=False)] = None
        indices = pc.fill_null(column.indices, 0).to_numpy()
        out = values[indices] if len(values) else np.full(len(column), None, dtype=object)
    elif pa.types.is_null(column.type):
        return np.full(len(column), None, dtype=object)
    else:
        fill = False if pa.types.is_boolean(column.type) else 0
        out = pc.fill_null(column, fill).to_numpy(zero_copy_only=False).astype(object)
    if nulls is not None:
        out[nulls] = None
    return out


def _decoded_json(column):
    """A JSON row column as a numpy object array of the decoded values, each distinct text decoded once."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        chunks = [_decoded_json(c) for c in column.chunks]
        return np.concatenate(chunks) if chunks else np.empty(0, dtype=object)
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    texts = column.dictionary.to_pylist()
    values = np.empty(len(texts) + 1, dtype=object)
    for i, text in enumerate(texts):
        values[i] = None if text is None else json.loads(text)
    values[len(texts)] = None
    indices = pc.fill_null(column.indices, len(texts)).to_numpy()
    return values[indices]


SHARED_ITEMS = 16  # a list of at most this many short texts is held once by a RowBlock (RowBlock._one)


class RowBlock:
    """Rows of `n` runs in order, column-wise (Snapshot.row_columns): `columns` key -> numpy object array
    (NaN where a row lacks the key), `events` (position, keys) that give the columns' order as
    pd.DataFrame(rows) takes it: each key where it first appears, in the order of that row's keys. Only a
    layout's first position is an event (a later row of it brings no key first): a tuple of keys a run was
    ~5 KB a run held by a first collect (#25)."""

    def __init__(self, n: int):
        import numpy as np

        self.n = n
        self.columns: dict = {}
        self.first: dict[tuple, int] = {}  # each distinct row layout -> the first position that holds it
        self.layouts: dict[tuple, int] = {}  # each distinct row layout (its keys in order) -> its number
        self.layout = np.full(n, -1, dtype=np.int32)  # each row's layout number (-1: none)
        self._shared: dict = {}  # equal short texts and lists of them, as one object (add_row)

    def _column(self, key: str):
        import numpy as np

        if key not in self.columns:
            self.columns[key] = np.full(self.n, np.nan, dtype=object)
        return self.columns[key]

    def add_columns(self, at, table) -> None:
        """Rows from manifest columns (`table`: layout and row columns) at positions `at` (increasing)."""
        import numpy as np
        import pyarrow.compute as pc

        layout = table.column("layout").combine_chunks()
        valid = layout.is_valid().to_numpy(zero_copy_only=False)
        texts = layout.dictionary.to_pylist()
        keys = [tuple(json.loads(t)) for t in texts]
        codes = pc.fill_null(layout.indices, -1).to_numpy()
        used, first = np.unique(codes[valid], return_index=True)
        where = at[valid]
        for code, i in zip(used, first):
            self._seen(int(where[i]), keys[code])
        numbers = np.array([self.layouts.setdefault(k, len(self.layouts)) for k in keys] or [0], np.int32)
        self.layout[where] = numbers[codes[valid]]
        has: dict[str, np.ndarray] = {}
        for code in used:
            for key in keys[code]:
                has.setdefault(key, np.zeros(len(keys), dtype=bool))[code] = True
        safe = np.where(valid, codes, 0)
        for name in table.column_names[1:]:
            key = name[2:]
            if key not in has:
                continue
            column = table.column(name)
            values = _decoded_json(column) if name.startswith("j:") else _decoded(column)
            present = valid & has[key][safe]
            self._column(key)[at[present]] = values[present]

    def add_row(self, i: int, row: dict) -> None:
        keys = tuple(row)
        self._seen(i, keys)
        self.layout[i] = self.layouts.setdefault(keys, len(self.layouts))
        for key, value in row.items():
            self._column(key)[i] = self._one(value)

    def _one(self, value):
        """A cell as the one object that holds its value (a row read from its files decodes its own copy of
        every text: ~3 KB a run at 10^6 runs, kept by the table and its kept copy), as the manifest's columns
        decode each distinct value once. Texts of 64 characters and more (ids, paths) are each run's own,
        as are lists of over SHARED_ITEMS (a run's predictions, say: the key would outweigh the list: V2)."""
        kind = type(value)
        if kind is str and len(value) < 64:
            return self._shared.setdefault(value, value)
        if kind is list and len(value) <= SHARED_ITEMS and all(type(v) is str and len(v) < 64 for v in value):
            return self._shared.setdefault(("list", *value), value)  # (a tuple key: never a text's)
        return value

    def _seen(self, at: int, keys: tuple) -> None:
        if at < self.first.get(keys, self.n):
            self.first[keys] = at

    @property
    def events(self) -> list[tuple[int, tuple]]:
        """(position, keys) of each layout's first row, by position."""
        return sorted(((at, keys) for keys, at in self.first.items()), key=lambda e: e[0])

    def keys(self) -> list[str]:
        """The columns in pd.DataFrame(rows)'s order."""
        return list(dict.fromkeys(k for _, ks in self.events for k in ks))


def rebuild(sweep: str | Path) -> None:
    """Forget the sweep's index (the next reader reads every run from its files and writes it anew)."""
    import shutil

    shutil.rmtree(os.path.join(str(sweep), INDEX_DIR), ignore_errors=True)
