"""Directory entries at 10^4..10^6 runs (#25): every run dir in the sweep dir (FLAT) against the same runs
under a shard level named by the first hex chars of the run's hash (256 or 4096 shards).

    .venv/bin/python benchmarks/dir_entries.py --runs 10000 100000 1000000 [--shards 256 4096]
        [--root /tmp/b36/dirs] [--cold-max 10000] [--cold-sample 10000] [--fsync]

For each N and layout, one process, one core, in this order (each op's wall and CPU time, us an op, ops/s):
  1. create: mkdir the run dir (and its shard, the first time) + status.json written to a temporary file
     and renamed into place (a run's claim and first record; no fsync unless --fsync: an fsync costs the
     same in any directory and would hide the directory's cost);
  2. stat <run>/status.json relative to the sweep dir's fd (as `petsweep status` does), random order, warm;
  3. stat of a run that does not exist (a new run's first look), random names, warm;
  4. listing the run names: os.scandir (names only), `ls` (it sorts) and `ls -f` (directory order);
  5. up to N = --cold-max, after `echo 3 > /proc/sys/vm/drop_caches` (only where this process may write
     it; else not measured): stat of --cold-sample runs in random order, then a scandir listing;
  6. shutil.rmtree of the sweep dir (everything it created is deleted), a separate row where 5 ran: the
     caches are cold then, and each unlink reads its inode from disk (10^4 runs: 66 s flat, 17 s sharded
     here, against 5 s warm; at 10^6 that would be an hour, hence --cold-max).
Names look like petsweep's (`<backbone>-<method>-<task>-s<seed>-<hash12>`, 43-48 bytes). Also printed: the
biggest directory's own size (its entries' blocks) and whether ext4 indexed it (htree: `lsattr -d` shows
`I`), on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

STATUS = json.dumps({"status": "RUNNING", "pid": 12345, "host": "node-01", "started": "2026-12-06T20:00:00"})
METHODS = ("prompt", "prefix", "lora", "apet")
TASKS = ("bbc_news", "ag_news", "sst2", "trec")
DROP_CACHES = "/proc/sys/vm/drop_caches"


def run_names(n: int, salt: str = "") -> list[str]:
    """n distinct run dir names shaped like petsweep.spec.identity.run_dir's."""
    names = []
    for i in range(n):
        digest = hashlib.sha1(f"{salt}{i}".encode()).hexdigest()[:12]
        names.append(f"minilm-l6-{METHODS[i % 4]}-{TASKS[i // 4 % 4]}-s{i // 16}-{digest}")
    return names


def shard_of(name: str, shards: int) -> str:
    """The shard sub-dir: the first hex chars of the run's hash (shards is a power of 16), '' when flat."""
    width = {1: 0, 16: 1, 256: 2, 4096: 3, 65536: 4}[shards]
    return name[-12:][:width]


def rel_path(name: str, shards: int) -> str:
    shard = shard_of(name, shards)
    return f"{shard}/{name}" if shard else name


class Timer:
    """Wall and CPU time (this process and its children) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, self._cpu() - self.cpu

    @staticmethod
    def _cpu() -> float:
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + child.ru_utime + child.ru_stime


def create(sweep: Path, names: list[str], shards: int, fsync: bool) -> None:
    """Each run's claim: mkdir (its shard first where it has none yet) and status.json renamed in."""
    made: set[str] = set()
    for name in names:
        shard = shard_of(name, shards)
        if shard and shard not in made:
            os.makedirs(sweep / shard, exist_ok=True)
            made.add(shard)
        run = os.path.join(sweep, shard, name)
        os.mkdir(run)
        tmp = os.path.join(run, f".status.json.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(STATUS)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, os.path.join(run, "status.json"))


def stat_all(sweep: Path, paths: list[str]) -> int:
    """os.stat of each path relative to the sweep dir's fd; how many were missing."""
    fd = os.open(sweep, os.O_RDONLY | os.O_DIRECTORY)
    missing = 0
    try:
        for path in paths:
            try:
                os.stat(path, dir_fd=fd)
            except FileNotFoundError:
                missing += 1
    finally:
        os.close(fd)
    return missing


def scandir_names(sweep: Path, shards: int) -> int:
    """How many run names a listing finds (each shard listed where there are shards)."""
    dirs = [sweep] if shards == 1 else [e.path for e in os.scandir(sweep)]
    count = 0
    for path in dirs:
        with os.scandir(path) as entries:
            count += sum(1 for _ in entries)
    return count


def ls(sweep: Path, shards: int, unsorted: bool) -> None:
    """`ls` (sorted) or `ls -f` of the run names: the sweep dir, or every shard in one command."""
    args = ["."] if shards == 1 else sorted(os.listdir(sweep))
    cmd = ["ls", "-f", *args] if unsorted else ["ls", *args]
    subprocess.run(cmd, cwd=sweep, stdout=subprocess.DEVNULL, check=True, env={**os.environ, "LC_ALL": "C"})


def drop_caches() -> bool:
    """Empty the page, dentry and inode caches where this process may (root on a VM); False elsewhere."""
    try:
        os.sync()
        with open(DROP_CACHES, "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def indexed(path: Path) -> str:
    """'yes' where ext4 keeps the directory as an htree (lsattr's I flag), '?' where lsattr cannot tell."""
    out = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True)
    if out.returncode:
        return "?"
    return "yes" if "I" in out.stdout.split()[0] else "no"


def measure(root: Path, n: int, shards: int, args) -> list[tuple[str, int, float, float]]:
    """(op, ops, wall s, cpu s) of each op for N runs in one layout; the sweep dir is gone afterwards."""
    sweep = root / f"sweep-{n}-{shards}"
    shutil.rmtree(sweep, ignore_errors=True)
    sweep.mkdir(parents=True)
    rng = random.Random(n)
    names = run_names(n)
    rows = []

    def timed(op: str, ops: int, fn) -> None:
        with Timer() as t:
            fn()
        rows.append((op, ops, t.wall, t.cpu))

    timed("1. create (mkdir + status.json renamed in)", n, lambda: create(sweep, names, shards, args.fsync))
    existing = [f"{rel_path(name, shards)}/status.json" for name in names]
    rng.shuffle(existing)
    stat_all(sweep, existing[: min(n, 10_000)])  # warm-up: the path strings and the caches
    timed("2. stat existing run (warm, random)", n, lambda: stat_all(sweep, existing))
    absent = [f"{rel_path(name, shards)}/status.json" for name in run_names(n, salt="new-")]
    timed("3. stat a run that does not exist", n, lambda: stat_all(sweep, absent))
    timed("4a. listing: os.scandir", n, lambda: scandir_names(sweep, shards))
    timed("4b. listing: `ls` (sorted)", n, lambda: ls(sweep, shards, unsorted=False))
    timed("4c. listing: `ls -f`", n, lambda: ls(sweep, shards, unsorted=True))
    biggest = max(
        [sweep, *(e.path for e in os.scandir(sweep) if shards > 1)], key=lambda p: os.stat(p).st_size
    )
    size_kb = os.stat(biggest).st_size // 1024
    print(f"  N={n} shards={shards}: biggest dir {size_kb} KB, htree {indexed(biggest)}", file=sys.stderr)
    cold_caches = n <= args.cold_max and drop_caches()
    if cold_caches:
        cold = existing[: min(n, args.cold_sample)]
        timed("5a. stat existing run, cold (random)", len(cold), lambda: stat_all(sweep, cold))
        drop_caches()
        timed("5b. listing: os.scandir, cold", n, lambda: scandir_names(sweep, shards))
    elif n <= args.cold_max:
        print(f"  cold: {DROP_CACHES} not writable here: not measured", file=sys.stderr)
    removal = "6. shutil.rmtree, cold caches" if cold_caches else "6. shutil.rmtree, warm"
    timed(removal, n, lambda: shutil.rmtree(sweep))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--shards", type=int, nargs="+", default=[256], help="powers of 16; FLAT always runs")
    parser.add_argument("--root", type=Path, default=Path("/tmp/b36/dirs"))
    parser.add_argument("--cold-max", type=int, default=10_000, help="largest N measured cold (5)")
    parser.add_argument("--cold-sample", type=int, default=10_000, help="runs stat'ed after dropping caches")
    parser.add_argument("--fsync", action="store_true", help="fsync each status.json (petsweep does)")
    args = parser.parse_args()
    print(f"{args.root}: {fs_type(args.root)}\n")
    print("| op | layout | N | wall s | CPU s | us/op | ops/s | us/op vs smallest N |")
    print("|---|---|---|---|---|---|---|---|")
    first: dict[tuple[str, int], float] = {}
    for n in args.runs:
        for shards in [1, *args.shards]:
            layout = "flat" if shards == 1 else f"{shards} shards"
            for op, ops, wall, cpu in measure(args.root, n, shards, args):
                per = wall / ops * 1e6
                ratio = per / first.setdefault((op, shards), per)
                print(
                    f"| {op} | {layout} | {n:,} | {wall:.2f} | {cpu:.2f} | {per:.2f} | {ops / wall:,.0f} "
                    f"| {ratio:.2f}x |",
                    flush=True,
                )
    if not any(args.root.iterdir()):
        args.root.rmdir()  # made here: nothing created is left behind


def fs_type(path: Path) -> str:
    """The filesystem the runs go to, as /proc/mounts names it (its longest mount point above `path`)."""
    path.mkdir(parents=True, exist_ok=True)
    target, found = str(path.resolve()), ("", "?", "?", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        dev, mount, kind, opts = line.split()[:4]
        if target.startswith(mount) and len(mount) >= len(found[0]):
            found = (mount, dev, kind, opts)
    mount, dev, kind, opts = found
    return f"{kind} on {dev} at {mount} ({opts})"


if __name__ == "__main__":
    main()
