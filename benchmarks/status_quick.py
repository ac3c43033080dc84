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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import medians_table, timed_command  # noqa: E402

NAMES = {False: "`petsweep status`", True: "`petsweep status --quick`"}


def timed(sweep: Path, quick: bool) -> dict:
    command = [sys.executable, "-m", "petsweep.cli", "status", str(sweep), *(["--quick"] if quick else [])]
    got = timed_command(command)
    got["counts"] = [line for line in got.pop("stdout").splitlines() if " runs: " in line][-1]
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    got: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.repeat):
        for quick in (False, True):
            got[quick].append(timed(args.sweep, quick))
            print(f"{NAMES[quick]}: {got[quick][-1]}", file=sys.stderr, flush=True)
    counts = {cell["counts"] for cells in got.values() for cell in cells}
    assert len(counts) == 1, counts  # both modes count the same runs in the same states
    print(f"{args.sweep}: {counts.pop()}; median of {args.repeat} fresh processes each, imports included\n")
    print(medians_table({NAMES[q]: cells for q, cells in got.items()}, NAMES[False]))


if __name__ == "__main__":
    main()
