"""A resume of a finished sweep, planned against answered by its plan memo, side by side in one run (#25).

    .venv/bin/python benchmarks/resume_memo.py <runs root> --runs N [--repeat 3]

The sweep is issue #25's (benchmarks.plan_sweep.scale_axes: prompt/prefix x 5 lengths x 10 lrs x N/100 seeds)
under <runs root>, every run finished (benchmarks/scale_table.py writes such runs; one `petsweep status` of
the sweep dir then builds its index). Each cell is one fresh process, `python run.py -m <axes>` as a user
types it (imports, Hydra included), with PETSWEEP_PLAN_MEMO=0 (the launch plans every run) and =1 (the memo
answers) alternating, `--repeat` times each, after one launch that writes the memo; the table gives median
wall time, CPU time and peak RSS. Both must launch nothing and report the same runs (checked).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import medians_table, timed_command  # noqa: E402
from benchmarks.plan_sweep import scale_axes  # noqa: E402

NAMES = {False: "planned (PETSWEEP_PLAN_MEMO=0)", True: "answered by the plan memo"}


def timed(axes: list[str], memo: bool) -> dict:
    env = dict(os.environ, PETSWEEP_PLAN_MEMO="1" if memo else "0", OMP_NUM_THREADS="1")
    got = timed_command([sys.executable, "run.py", "-m", *axes], env)
    got["said"] = [line for line in got.pop("stdout").splitlines() if line.startswith("petsweep sweep ")]
    if not got["said"] or not got["said"][0].endswith("; launching 0"):
        raise RuntimeError(f"the sweep is not finished: {got['said']}")
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    axes = scale_axes(args.runs, args.root.resolve())
    timed(axes, True)  # writes the memo (a plan), as the launch before a resume would have
    got: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.repeat):
        for memo in (False, True):
            got[memo].append(timed(axes, memo))
            print(f"{NAMES[memo]}: {got[memo][-1]}", file=sys.stderr, flush=True)
    said = {json.dumps(cell["said"]) for cells in got.values() for cell in cells}
    assert len(said) == 1, said  # the same runs, states and duplicates either way
    print(f"{json.loads(said.pop())[-1]}; median of {args.repeat} fresh processes each, imports included\n")
    table = {NAMES[m]: cells for m, cells in got.items()}
    print(medians_table(table, NAMES[False], "`run.py -m` of the finished sweep"))


if __name__ == "__main__":
    main()
