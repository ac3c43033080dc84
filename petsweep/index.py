"""The sweep index: a cache of each run's state and results, so `petsweep status`, `collect` and
`invalidate` read a sweep of 10^5..10^6 runs without opening every run's files (#25).

Where: `<sweep>/.index/`. Each process that changes a run's state (RunDir.set_status: every claim, start,
end, failure and cancel goes through it) appends one JSON line to a file of its own,
`<host>-<pid>-<start>.jsonl`: no two processes write one file, so many writers on NFS need no lock.
Readers merge every line file with `manifest.parquet`, which a reader writes when lines have piled up
(`petsweep collect` whenever anything changed): written under a temporary name, renamed over the old one,
then the line files it folded in are unlinked. A crash anywhere in between leaves a manifest and lines that
say the same; a line written into a file while it is folded is lost, and its run is read from its files.

The run dirs stay the truth; the index only says what their files held when it read them. Every entry
carries the stat signature of its run at that moment (the run dir's mtime, status.json's mtime, size and
inode, result.json's mtime and size); a reader stats each run (3 stats) and uses an entry only where the
signature is still the run's. A run whose files changed behind the index (an edit, a crash between
status.json and its line, a run dir copied in, runs older than the index) is read from its files, and a
line is appended that repairs the index. Record writes rename files into the run dir (write_atomic), which
moves the dir's mtime, so any rewritten record file, error.txt or transfer result (petsweep.transfer touches
the dir) is seen; an in-place edit of a file other than status.json or result.json is not.

Entries are also tied to the code that read them (`fingerprint`: the sources of the modules that decide a
run's state, identity and table row): entries of other code are not used. The index is rebuilt from the run
dirs by deleting `<sweep>/.index`; PETSWEEP_INDEX=0 reads every run from its files and writes no index.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
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
READS: Counter = Counter()  # runs read from their files, by what was read ("info", "row", ...): tests count


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "false", "no")


_FINGERPRINT: list[str] = []
_SOURCES = (
    "petsweep/index.py",
    "petsweep/status.py",
    "petsweep/rehash.py",
    "petsweep/identity.py",
    "petsweep/record.py",
    "petsweep/config.py",
    "analysis/load.py",
)


def fingerprint() -> str:
    """A hash of the sources that decide what an entry holds; entries written under another are not used."""
    if not _FINGERPRINT:
        root = Path(__file__).resolve().parent.parent
        digest = hashlib.sha256()
        for name in _SOURCES:
            with contextlib.suppress(OSError):
                digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
        _FINGERPRINT.append(digest.hexdigest()[:20])
    return _FINGERPRINT[0]


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


def scan(sweep: str | Path) -> dict[str, tuple[int, ...]]:
    """The runs of a sweep dir (its sub-dirs holding status.json; hidden ones skipped, as `*/status.json`
    skips them), sorted by name, each with its signature."""
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


# rehash.stale_record, registered by petsweep.rehash when it is imported (it imports petsweep.status, which
# writes through this module: no import back); a run's own line says whether its record is of another
# identity where the writer has it, else a reader reads that from the files
STALE: list[Callable] = []
WARNING: list[Callable] = []  # rehash.stale_warning: what that check warned of (config.yaml edited, ...)


def info_of(run, stale: Callable | None) -> dict:
    """What `petsweep status` and `invalidate` need of a run (a petsweep.status.RunDir), read from its files
    the way they read them: status.json (a COMPLETED run without a readable result.json reads FAILED),
    whether its record is of another identity (`stale`: rehash.stale_record; left out where None), a
    finished run's scalar results and its last progress.json."""
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
        if stale is not None:
            info["stale"] = stale(run.path, result)
            warning = WARNING[0](run.path) if WARNING else None
            if warning is not None:
                info["warning"] = warning  # a plan answered from the index warns as its files did
        keys = ("steps", "best_dev_score", "metric", "score", "pet_moved")  # pet_moved: record.notes
        info["result"] = {k: result.get(k) for k in keys}
    return info


def _complete(info: dict) -> bool:
    return info.get("state") != "COMPLETED" or "stale" in info


# ---------------------------------------------------------------- writing lines


_WRITERS: dict[str, tuple[int, int]] = {}  # index dir -> (pid, fd) of this process's line file
_START: dict[int, int] = {}


def _line_file(index_dir: str) -> int:
    pid = os.getpid()
    held = _WRITERS.get(index_dir)
    if held and held[0] == pid:
        with contextlib.suppress(OSError):
            if os.fstat(held[1]).st_nlink > 0:
                return held[1]
            os.close(held[1])  # folded into the manifest and unlinked: start a new file
    os.makedirs(index_dir, exist_ok=True)
    start = _START.setdefault(pid, time.time_ns())
    name = f"{socket.gethostname()}-{pid}-{start}.jsonl"
    fd = os.open(os.path.join(index_dir, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _WRITERS[index_dir] = (pid, fd)
    return fd


def append(sweep: str | Path, entries: list[dict]) -> None:
    """Append entries as lines to this process's own line file of the sweep's index (one write each: a
    reader never sees half a line but the last one of a file being written, which it skips)."""
    if not entries:
        return
    fd = _line_file(os.path.join(str(sweep), INDEX_DIR))
    fp = fingerprint()
    for entry in entries:
        line = {k: v for k, v in entry.items() if not k.startswith("_")}
        os.write(fd, (json.dumps({**line, "fp": fp}, separators=(",", ":")) + "\n").encode())


def record(run) -> None:
    """Index the run's state after its status.json was written (RunDir.set_status, `run` the RunDir): never
    raises, the run dir is the record and a missing line only costs a reader one read of the run's files."""
    if not enabled():
        return
    try:
        path = str(run.path)
        sig = signature(path)  # before the files are read: a later change shows as another signature
        if sig is None:
            return
        entry = {"run": os.path.basename(path), "sig": list(sig), "t": time.time()}
        entry.update(info_of(run, STALE[0] if STALE else None))
        append(os.path.dirname(path), [entry])
    except Exception as err:  # noqa: BLE001 (an index is a cache: the run goes on)
        log.debug("petsweep: no index line for %s: %s", run.path, err)


# ---------------------------------------------------------------- reading


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
    ):
        """`compute`: per big field, how to read it from a run dir's files: (value, whether it may be kept).
        `read_info`: how to read a run's status fields (info_of) from its files, where the index lacks them
        (None: they are not needed, as collect needs only rows). `lazy`: a run the index lacks is read only
        when asked for (entry), not every such run of the sweep now (a plan asks for its own runs)."""
        self.sweep = str(Path(sweep))
        self.dir = os.path.join(self.sweep, INDEX_DIR)
        self.compute = compute or {}
        self.read_info = read_info
        self.runs = scan(self.sweep)
        self.info: dict[str, dict] = {}
        self.fresh: dict[str, dict] = {}  # name -> big fields not in the manifest: {field: json text}
        self.in_manifest: dict[str, set[str]] = {}  # name -> big fields the manifest holds for it
        self.repairs: list[dict] = []
        self.racy: set[str] = set()  # read in the clock tick of a write: used now, never stored
        self.lines_read: list[str] = []
        self.read_now: set[str] = set()  # runs read from their files by this snapshot
        self.line_count = 0
        self.no_manifest = False  # none, or one of other code: the next finish writes one
        self._manifest = os.path.join(self.dir, MANIFEST)
        self.fp = fingerprint() if enabled() else ""
        if enabled():
            self._read_manifest()
            self._read_lines()
        if read_info is not None and not lazy:
            self._read_missing()

    # the manifest's small columns: which runs it holds, and their status fields
    def _read_manifest(self) -> None:
        try:
            import pyarrow.parquet as pq

            file = pq.ParquetFile(self._manifest)
        except (OSError, ValueError, ImportError):
            self.no_manifest = True
            return
        meta = file.schema_arrow.metadata or {}
        if meta.get(b"fingerprint", b"").decode() != self.fp:
            self.no_manifest = True
            return
        parse = self.read_info is not None  # collect needs no status fields: they stay text on disk
        columns = ["run", *SIG_FIELDS, *(["info"] if parse else []), *[f"has_{f}" for f in BIG]]
        for batch in file.iter_batches(batch_size=BATCH, columns=columns):
            data = batch.to_pydict()
            sigs = zip(*(data[f] for f in SIG_FIELDS))
            for i, (name, sig) in enumerate(zip(data["run"], sigs)):
                if self.runs.get(name) != sig:
                    continue
                held = {f for f in BIG if data[f"has_{f}"][i]}
                if not parse:
                    held.add("info")  # kept as it is by compact
                elif data["info"][i] is not None:
                    self.info[name] = json.loads(data["info"][i])
                self.in_manifest[name] = held

    def _read_lines(self) -> None:
        for file in sorted(glob.glob(os.path.join(glob.escape(self.dir), "*.jsonl"))):
            try:
                with open(file, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            self.lines_read.append(file)
            for raw in data.splitlines():
                self.line_count += 1
                try:
                    line = json.loads(raw)
                    name, sig = line["run"], tuple(line["sig"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short (a writer killed mid-write, a full disk)
                if line.get("fp") != self.fp or self.runs.get(name) != sig:
                    continue
                big = {f: line.pop(f) for f in BIG if isinstance(line.get(f), str)}
                for key in ("run", "sig", "fp", "t", *BIG):
                    line.pop(key, None)
                if line and (name not in self.info or _complete(line) or not _complete(self.info[name])):
                    self.info[name] = line  # never a line without the identity check over one with it
                if big:
                    self.fresh.setdefault(name, {}).update(big)

    def _read_missing(self) -> None:
        now = time.time()
        for name, sig in self.runs.items():
            if name not in self.info or not _complete(self.info[name]):
                self._read_info(name, sig, now)

    def _read_info(self, name: str, sig: tuple[int, ...], now: float) -> dict:
        READS["info"] += 1
        info = self.read_info(f"{self.sweep}/{name}")
        self.info[name] = info
        self.read_now.add(name)
        if _racy(sig, now):
            self.racy.add(name)
        elif enabled():
            self.repairs.append({"run": name, "sig": list(sig), "t": now, **info})
        return info

    def entry(self, name: str) -> dict | None:
        """A run's status fields (info_of) for its files as they are now: its index entry, else read from its
        files (and kept for the index); None where the sweep dir holds no run of that name (no status.json).
        """
        sig = self.runs.get(name)
        if sig is None:
            return None
        info = self.info.get(name)
        if info is None or not _complete(info):
            info = self._read_info(name, sig, time.time())
        return info

    def _computed(self, name: str, field: str):
        """The field read from the run's files (and its line kept for the repair, where JSON holds it)."""
        READS[field] += 1
        value, keep = self.compute[field](f"{self.sweep}/{name}")
        sig = self.runs[name]
        if keep and value is not None and _plain(value) and enabled() and not _racy(sig, time.time()):
            text = json.dumps(value, separators=(",", ":"))
            self.fresh.setdefault(name, {})[field] = text
            info = self.info.get(name, {}) if name not in self.racy else {}
            line = {"run": name, "sig": list(sig), "t": time.time(), **info, field: text}
            self.repairs.append(line)
        return value

    def iter_field(self, field: str) -> Iterator[tuple[str, object]]:
        """(name, value) of every run in name order: from a line or the manifest where they hold it for the
        run's files as they are, else computed from the files (self.compute[field]). One manifest batch is
        in memory at a time."""
        from_manifest = self._manifest_field(field)
        pending = next(from_manifest, None)
        for name in self.runs:
            while pending is not None and pending[0] < name:
                pending = next(from_manifest, None)
            text = self.fresh.get(name, {}).get(field)
            if text is None and field in self.in_manifest.get(name, ()) and pending and pending[0] == name:
                text = pending[1]
            yield name, json.loads(text) if text is not None else self._computed(name, field)

    def _manifest_field(self, field: str) -> Iterator[tuple[str, str]]:
        if not any(field in held for held in self.in_manifest.values()):
            return
        import pyarrow.parquet as pq

        file = pq.ParquetFile(self._manifest)
        for batch in file.iter_batches(batch_size=BATCH, columns=["run", field]):
            names, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
            yield from ((n, t) for n, t in zip(names, texts) if t is not None)

    def finish(self, compact: bool | None = None) -> None:
        """Store what this read learnt: fold everything into a new manifest (`compact`; by default when
        lines have piled up past 1% of the runs, or there is no manifest), else append the repairs as
        lines. Never raises: a sweep dir this process cannot write is read the same way next time."""
        if not enabled():
            return
        try:
            lines = self.line_count + len(self.repairs)
            if compact is None:
                compact = self.no_manifest and bool(self.runs) or lines > max(1000, len(self.runs) // 100)
            if compact and (lines or self.no_manifest):
                self.compact()
            elif self.repairs:
                append(self.sweep, self.repairs)
            self.repairs = []
        except Exception as err:  # noqa: BLE001 (a cache: the answer was already given)
            log.debug("petsweep: index of %s not updated: %s", self.sweep, err)

    def compact(self) -> None:
        """Write every entry into a new manifest (a temporary file, renamed over the old one), then unlink
        the line files read: a crash between leaves lines the new manifest already holds, read the same."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        os.makedirs(self.dir, exist_ok=True)
        schema = pa.schema(
            [("run", pa.string())]
            + [(f, pa.int64()) for f in SIG_FIELDS]
            + [("info", pa.string())]
            + [(f, pa.large_string()) for f in BIG]
            + [(f"has_{f}", pa.bool_()) for f in BIG],
            metadata={"fingerprint": self.fp},
        )
        tmp = os.path.join(self.dir, f".{MANIFEST}.{socket.gethostname()}-{os.getpid()}.tmp")
        streams = {f: self._manifest_field(f) for f in ("info", *BIG)}
        pending = {f: next(s, None) for f, s in streams.items()}
        try:
            with pq.ParquetWriter(tmp, schema) as writer:
                rows: dict[str, list] = {name: [] for name in schema.names}
                for name, sig in self.runs.items():
                    rows["run"].append(name)
                    for field, value in zip(SIG_FIELDS, sig):
                        rows[field].append(value)
                    for field in ("info", *BIG):
                        while pending[field] is not None and pending[field][0] < name:
                            pending[field] = next(streams[field], None)
                        if field == "info" and name in self.info:
                            info = self.info[name] if name not in self.racy else None
                            text = None if info is None else json.dumps(info, separators=(",", ":"))
                        else:
                            text = self.fresh.get(name, {}).get(field)
                        if text is None and field in self.in_manifest.get(name, ()):
                            got = pending[field]
                            text = got[1] if got and got[0] == name else None
                        rows[field].append(text)
                        if field != "info":
                            rows[f"has_{field}"].append(text is not None)
                    if len(rows["run"]) >= BATCH:
                        writer.write_table(pa.table(rows, schema=schema))
                        rows = {key: [] for key in rows}
                writer.write_table(pa.table(rows, schema=schema))
            os.replace(tmp, self._manifest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        for file in self.lines_read:
            with contextlib.suppress(OSError):
                os.unlink(file)
        self.lines_read = []
        self.line_count = 0
        self.no_manifest = False


def rebuild(sweep: str | Path) -> None:
    """Forget the sweep's index (the next reader reads every run from its files and writes it anew)."""
    import shutil

    shutil.rmtree(os.path.join(str(sweep), INDEX_DIR), ignore_errors=True)
