"""The sweep index's commands at 10^6 finished runs, each as a user types it, in order (#25).

    .venv/bin/python benchmarks/million.py --runs 1000000 --root DIR [--reuse] [--old]

Builds (or, --reuse, takes) N finished runs in one sweep dir with benchmarks/index_scale.py (petsweep's own
layout, ~37 KB and 10 inodes a run, no index lines: as a petsweep from before the index left them), then runs
each command in a fresh process (`python -m petsweep.cli ...`, imports included): the first `status`, which
builds the index from the run dirs; `status` and `status --quick` again; the first `collect -o`, which reads
every run's row and keeps its table; `collect -o` and `collect --quick -o` again; then after 1% of the runs
were trained again (result.json and status.json rewritten through RunDir, which writes the index line a run
writes), `collect --quick -o`, `status`, `status --quick`, and after another 1%, `collect -o`. --old also
times `status` and `collect -o` with PETSWEEP_INDEX=0 (every run's files read, as before the index).
Checks: every status prints the same counts, and each quick table equals the verified table of the same
runs. Prints the markdown table (wall, CPU, peak RSS a command).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import timed_command  # noqa: E402
from benchmarks.index_scale import change_with, prepare  # noqa: E402

CLI = [sys.executable, "-m", "petsweep.cli"]


def timed(args: list[str], old: bool = False) -> dict:
    env = dict(os.environ, PETSWEEP_INDEX="0" if old else "1", OMP_NUM_THREADS="1")
    got = timed_command([*CLI, *args], env)
    said = got.pop("stdout").splitlines()
    got["said"] = [line for line in said if " runs: " in line or " runs -> " in line]
    return got


def same_tables(a: Path, b: Path) -> None:
    import pyarrow.parquet as pq

    assert pq.read_table(a).equals(pq.read_table(b)), f"{a} != {b}"


def steps(sweep: Path, old: bool) -> list[tuple[str, dict]]:
    out = sweep.parent
    status, quick_status = ["status", str(sweep)], ["status", str(sweep), "--quick"]
    collect = lambda name, *more: ["collect", str(sweep), "-o", str(out / name), *more]  # noqa: E731
    got = []

    def run(label: str, args: list[str], **kwargs) -> dict:
        got.append((label, timed(args, **kwargs)))
        print(f"{label}: {got[-1][1]}", file=sys.stderr, flush=True)
        return got[-1][1]

    run("`status`, first (builds the index from the run dirs)", status)
    run("`status`", status)
    run("`status --quick`", quick_status)
    run("`collect -o`, first (reads every run's row, keeps its table)", collect("first.parquet"))
    run("`collect -o`", collect("warm.parquet"))
    run("`collect --quick -o`", collect("warm-quick.parquet", "--quick"))
    same_tables(out / "warm.parquet", out / "warm-quick.parquet")
    changed = change_with(sweep, 0.01, REPO)
    run(f"`collect --quick -o` after 1% ({changed:,} runs) trained again", collect("q1.parquet", "--quick"))
    run("`status` after 1% trained again", status)
    run("`status --quick` after 1% trained again", quick_status)
    run("`collect -o` (verified) of the same runs", collect("v1.parquet"))
    same_tables(out / "q1.parquet", out / "v1.parquet")
    changed = change_with(sweep, 0.01, REPO)
    run(f"`collect -o` after another 1% ({changed:,} runs) trained again", collect("v2.parquet"))
    if old:
        run("`status`, PETSWEEP_INDEX=0 (every run's files)", status, old=True)
        run("`collect -o`, PETSWEEP_INDEX=0 (every run's files)", collect("old.parquet"), old=True)
        same_tables(out / "v2.parquet", out / "old.parquet")
    counts = {cell["said"][-1] for label, cell in got if label.startswith("`status")}
    assert len(counts) == 1, counts  # every run COMPLETED throughout, read either way
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--reuse", action="store_true", help="take runs an earlier --build-only built")
    parser.add_argument("--old", action="store_true", help="also PETSWEEP_INDEX=0's status and collect")
    args = parser.parse_args()
    sweep = args.root / f"n{args.runs}" / "sweep"
    prepare(sweep, args.runs, args.reuse)
    time.sleep(2)  # a run read in the clock tick of its write is read again by the next command (racy)
    kb = int(subprocess.run(["du", "-sk", str(sweep)], capture_output=True, text=True).stdout.split()[0])
    got = steps(sweep, args.old)
    index_kb = int(
        subprocess.run(["du", "-sk", str(sweep / ".index")], capture_output=True, text=True).stdout.split()[0]
    )
    print(f"{args.runs:,} runs, {kb / args.runs:.1f} KB a run on disk; the index {index_kb / 1024:.0f} MB\n")
    print("| command | wall | CPU | peak RSS | said |\n|---|---|---|---|---|")
    for label, cell in got:
        said = cell["said"][-1] if cell["said"] else ""
        print(f"| {label} | {cell['wall']:.1f} s | {cell['cpu']:.1f} s | {cell['rss_gb']:.2f} GB | {said} |")


if __name__ == "__main__":
    main()
