"""The local launcher's fixed cost per run: warm workers against a fresh `python run.py` process per run.

    .venv/bin/python benchmarks/warm_workers.py [--runs 8] [--rounds 2] [--out BENCHMARKS.md]

The same sweep of `--runs` one-step runs (MiniLM-L1 + LoRA on BBC News, one run per core) is launched with
hydra.launcher.warm_workers=true and =false, alternating, `--rounds` times each, into fresh run roots. Per-run
overhead = a run's slot time (the launcher's slots.jsonl) - the run's own `wall_time_s` (load + train + eval,
as it records it): a fresh process's start-up, or a warm worker's (paid by its first run). Outside the
slots: the sweep's wall time minus the slots' busy time per slot (planning, Hydra, the launcher's start).
Medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.common import emit, one_step_sweep  # noqa: E402


def one_sweep(root: Path, runs: int, warm: bool) -> dict:
    wall = one_step_sweep(root, runs, f"hydra.launcher.warm_workers={str(warm).lower()}")
    results = {p.parent.name: json.loads(p.read_text()) for p in (root / "overhead").glob("*/result.json")}
    assert len(results) == runs, f"{len(results)} of {runs} runs finished"
    [slots_file] = (root / "overhead" / ".launcher").glob("*/*/slots.jsonl")
    jobs = [json.loads(line) for line in slots_file.read_text().splitlines()]
    # what each slot spent on a run beyond the run's own load + train + eval
    overheads = [job["slot_s"] - results[job["runs"][0]]["wall_time_s"] for job in jobs]
    slots = min(os.cpu_count() or 1, runs)  # the pool runs one run per core
    return {
        "wall": wall,
        "inside": statistics.mean(r["wall_time_s"] for r in results.values()),
        "overhead": statistics.mean(overheads),
        "overhead_median": statistics.median(overheads),
        "outside": wall
        - sum(job["slot_s"] for job in jobs) / slots,  # planning, start-up, the last slot idle
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    measured: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for warm in (False, True):
                measured[warm].append(one_sweep(Path(tmp) / f"{warm}-{round_}", args.runs, warm))

    def median(warm: bool, key: str) -> float:
        return statistics.median(m[key] for m in measured[warm])

    rows = [
        f"| {label} | {median(warm, 'wall'):.1f} s | {median(warm, 'outside'):.1f} s | "
        f"{median(warm, 'inside'):.2f} s | {median(warm, 'overhead'):.2f} s | "
        f"{median(warm, 'overhead_median'):.2f} s |"
        for label, warm in (("process per run (`warm_workers=false`)", False), ("warm workers", True))
    ]
    table = "\n".join(
        [
            f"Local launcher, {args.runs} one-step runs, {min(os.cpu_count() or 1, args.runs)} slots, "
            f"median of {args.rounds} rounds",
            "",
            "| mode | sweep wall | outside the slots (plan, start) | run's own load+train+eval | "
            "per-run overhead, mean | per-run overhead, median |",
            "|---|---|---|---|---|---|",
            *rows,
            f"| warm / process per run, sweep wall | {median(True, 'wall') / median(False, 'wall'):.2f} "
            "| | | | |",
        ]
    )
    emit(table, args.out)


if __name__ == "__main__":
    main()
