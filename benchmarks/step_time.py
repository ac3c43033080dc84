"""Step-time benchmark on the packaged MiniLM-L6, batch 16, sequence length 128, measured side by side.

    .venv/bin/python benchmarks/step_time.py [--steps 10] [--rounds 3] [--out BENCHMARKS.md]

Rows:
  - petsweep LoRA step and petsweep full-FT step: the real training loop (petsweep.run.app.run), the median
    step time its record reports (batch assembly, forward, backward, clipping, AdamW, schedule), no warm-up.
  - raw peft LoRA step: peft.get_peft_model on the same model and data with a plain AdamW loop, no petsweep.
  - fixed overhead of one run: `python run.py` in a fresh process, from process start to the first step, and
    the model + data load inside it.
Rounds alternate the measured configurations so that drift of the machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import emit  # noqa: E402

# the per-method benchmark holds the shape, the offline environment and both measurements
from benchmarks.method_steps import SHAPE, petsweep_one, raw_peft_one  # noqa: E402


def petsweep_step(method: str, steps: int, root: Path) -> float:
    """Median step time of a real petsweep run (its record's step_time_s: the first 2 steps are warm-up)."""
    return petsweep_one(method, steps, f"{root}/{method}-{time.time_ns()}")["step_s"]


def raw_peft_step(steps: int) -> float:
    """The same LoRA (r=8, alpha=16, q,v; head trained) with peft's own API and a textbook loop."""
    return raw_peft_one("lora", steps)["step_s"]


def run_overhead(root: Path) -> dict:
    """A fresh `python run.py` process: start -> first step, and model + data load."""
    started = time.time()
    out = subprocess.run(
        [
            sys.executable,
            "run.py",
            "trainer.max_steps=1",
            "trainer.eval_every=1",
            f"paths.runs_root={root}/overhead-{time.time_ns()}",
            *SHAPE,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    [record] = Path(out.stdout.split("record: ")[-1].strip()).parent.glob("result.json")
    result = json.loads(record.read_text())
    return {
        "first_step": result["time_to_first_step_s"],
        "load": result["load_time_s"],
        "process": time.time() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="append the table to this markdown file")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"lora": [], "full": [], "peft": []}
    overheads = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for _ in range(args.rounds):
            samples["lora"].append(petsweep_step("lora", args.steps, root))
            samples["full"].append(petsweep_step("full", args.steps, root))
            samples["peft"].append(raw_peft_step(args.steps))
            overheads.append(run_overhead(root))
    med = {k: statistics.median(v) for k, v in samples.items()}
    over = {k: statistics.median(o[k] for o in overheads) for k in overheads[0]}
    import torch

    lines = [
        f"MiniLM-L6, batch 16, seq 128, {args.steps} steps x {args.rounds} rounds (median), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| petsweep LoRA step | {med['lora']:.3f} s | |",
        f"| petsweep full-FT step | {med['full']:.3f} s | |",
        f"| raw peft LoRA step | {med['peft']:.3f} s | |",
        f"| LoRA step / full-FT step | {med['lora'] / med['full']:.3f} | <= 0.65 |",
        f"| petsweep LoRA step / raw peft LoRA step | {med['lora'] / med['peft']:.3f} | <= 1.02 |",
        f"| process start -> first step (`python run.py`) | {over['first_step']:.1f} s | |",
        f"| model + data load inside the run | {over['load']:.1f} s | |",
        f"| whole 1-step process (incl. eval, exit) | {over['process']:.1f} s | |",
    ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
