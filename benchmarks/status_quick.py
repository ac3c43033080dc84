"""`petsweep status` against `petsweep status --quick` on one sweep dir, side by side in one run (#25).

    .venv/bin/python benchmarks/status_quick.py <sweep dir> [--repeat 3]

A verified status stats three files of every run (what sees an edit behind the index's back); --quick reads
the sweep's index alone. Each cell is one fresh process (`python -m petsweep.cli status ...`, imports
included), the two alternating, `--repeat` times each; the table gives the median wall time, CPU time and
peak RSS, and the ratio quick / verified. Both must print the same counts line (checked). The sweep's index
should be built first (one `petsweep status` of this tree): a first read builds it, in either mode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# one command in a child of a child: RUSAGE_CHILDREN of the middle process is that command's alone
_TIMED = """
import json, resource, subprocess, sys, time
started = time.time()
out = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True, check=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
counts = [line for line in out.stdout.splitlines() if " runs: " in line][-1]
print(json.dumps({"wall": time.time() - started, "cpu": usage.ru_utime + usage.ru_stime,
                  "rss_gb": usage.ru_maxrss / 1024**2, "counts": counts}))
"""


def timed(sweep: Path, quick: bool) -> dict:
    command = [sys.executable, "-m", "petsweep.cli", "status", str(sweep), *(["--quick"] if quick else [])]
    out = subprocess.run([sys.executable, "-c", _TIMED, json.dumps(command)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    got: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.repeat):
        for quick in (False, True):
            got[quick].append(timed(args.sweep, quick))
            print(f"{'quick' if quick else 'verified'}: {got[quick][-1]}", file=sys.stderr, flush=True)
    counts = {cell["counts"] for cells in got.values() for cell in cells}
    assert len(counts) == 1, counts  # both modes count the same runs in the same states
    median = {
        q: {k: statistics.median(c[k] for c in cells) for k in ("wall", "cpu", "rss_gb")}
        for q, cells in got.items()
    }
    print(f"{args.sweep}: {counts.pop()}; median of {args.repeat} fresh processes each, imports included\n")
    print("| | wall | CPU | peak RSS |\n|---|---|---|---|")
    for quick, name in ((False, "`petsweep status`"), (True, "`petsweep status --quick`")):
        m = median[quick]
        print(f"| {name} | {m['wall']:.2f} s | {m['cpu']:.2f} s | {m['rss_gb']:.2f} GB |")
    ratio = {k: median[True][k] / median[False][k] for k in ("wall", "cpu", "rss_gb")}
    print(f"| quick / verified | {ratio['wall']:.2f} | {ratio['cpu']:.2f} | {ratio['rss_gb']:.2f} |")


if __name__ == "__main__":
    main()
