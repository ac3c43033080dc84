"""One rank against two on CPU gloo: the same run (global batch 16) as one process with both cores, and as two
ranks with one core each, plain data parallel (LoRA) and ZeRO-3 (full fine-tuning, where sharding pays);
wall time of the whole command, training time, and each rank's peak RSS, side by side.

python benchmarks/ranks.py [--steps 30] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, emit

CASES = [  # (label, overrides)
    ("LoRA, plain", ["method=lora"]),
    ("full FT, ZeRO-3", ["method=full", "deepspeed=zero3"]),
]


def one(overrides: list[str], ranks: int, steps: int, root: Path) -> dict:
    command = [
        sys.executable,
        "run.py",
        "backbone=minilm-l6",
        "task=bbc_news",
        f"paths.runs_root={root}",
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={steps}",
        f"trainer.save_every={steps}",
        "trainer.batch_size=16",
        "task.max_length=128",
        "trainer.num_threads=2",
        f"trainer.ranks={ranks}",
        *overrides,
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    wall = time.perf_counter() - started
    [result] = [json.loads(p.read_text()) for p in root.glob("*/*/result.json")]
    return {"wall_s": wall, **result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [
        "| run | ranks | command wall (s) | train (s) | step (s) | peak RSS per rank (MB) | test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, overrides in CASES:
        measured = {}
        for ranks in (1, 2):
            with tempfile.TemporaryDirectory() as root:
                measured[ranks] = r = one(overrides, ranks, args.steps, Path(root))
            peaks = " / ".join(f"{p:.0f}" for p in r["rank_peak_memory_mb"])
            rows.append(
                f"| {label} | {ranks} | {r['wall_s']:.1f} | {r['train_time_s']:.1f} | {r['step_time_s']:.3f} "
                f"| {peaks} | {r['score']:.4f} |"
            )
        ratio = measured[2]["train_time_s"] / measured[1]["train_time_s"]
        rows.append(f"| {label}: 2 ranks / 1 rank, training time | | | {ratio:.2f} | | | |")
    emit("\n".join(rows), args.out)


if __name__ == "__main__":
    main()
