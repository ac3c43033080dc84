"""Sweep machinery: planning a synthetic 10,000-run sweep; the local launcher's per-run overhead.

    .venv/bin/python benchmarks/plan_sweep.py [--out BENCHMARKS.md]

Rows:
  - `petsweep plan` of 10,000 runs (4 backbones x 25 LoRA ranks x 100 seeds), a fresh process, wall time:
    composition, validation, run identity, status from disk, parameter counts (meta device) and cost.
  - Hydra composing the same runs one by one (the compose API, as Hydra's own sweep validation does):
    timed on the first 300 runs and scaled to 10,000.
  - the local launcher: a 4-run sweep of 1-step runs (`python run.py -m`); overhead per run = the sweep's
    wall time / runs - the runs' own in-process time (start-up of a fresh Python, imports, composition).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.common import one_step_sweep  # noqa: E402

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

AXES = [
    "backbone=minilm-l1,minilm-l2,minilm-l3,minilm-l6",
    "method=lora",
    "method.r=" + ",".join(str(r) for r in range(1, 26)),
    "seed=range(0,100)",
]


def plan_seconds(root: Path) -> tuple[float, int]:
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "petsweep.cli", "plan", *AXES, f"paths.runs_root={root}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.time() - started, len(out.stdout.splitlines()) - 2


def hydra_one_by_one_seconds(root: Path, sample: int = 300) -> float:
    from launchers.expand import expand
    from petsweep.config import compose

    runs = expand(AXES + [f"paths.runs_root={root}"])
    compose(runs[0])  # warm: Hydra's first initialisation is not per-run cost
    started = time.time()
    for overrides in runs[:sample]:
        compose(overrides)
    return (time.time() - started) / sample * len(runs)


def launcher_overhead(root: Path, runs: int = 4) -> dict:
    wall = one_step_sweep(root, runs)
    results = [json.loads(p.read_text()) for p in (root / "overhead").glob("*/result.json")]
    inside = sum(r["wall_time_s"] for r in results)
    slots = os.cpu_count() or 1  # the pool runs one run per core
    return {"wall": wall, "per_run": wall * min(slots, runs) / runs, "inside": inside / runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plan_s, listed = plan_seconds(Path(tmp))
        hydra_s = hydra_one_by_one_seconds(Path(tmp))
        over = launcher_overhead(Path(tmp))
    lines = [
        f"Sweep machinery, {os.cpu_count()} CPUs",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| `petsweep plan` of a 10,000-run sweep ({listed} rows), new process | {plan_s:.1f} s | <= 30 s |",
        f"| Hydra composing the same 10,000 runs one by one (300 timed, scaled) | {hydra_s:.0f} s | |",
        f"| local launcher: 4 one-step runs, sweep wall time | {over['wall']:.1f} s | |",
        f"| local launcher: per-run time in a slot, minus the run's own time | "
        f"{over['per_run'] - over['inside']:.1f} s "
        f"(slot {over['per_run']:.1f} s, run {over['inside']:.1f} s) | |",
    ]
    print("\n".join(lines))
    if args.out:
        with args.out.open("a") as fh:
            fh.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
