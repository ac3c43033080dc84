"""What every benchmark script does the same way: a configuration in a fresh process, and the table out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def in_fresh_process(script: str, *args: str) -> dict:
    """Run `script` with `args` in a new interpreter (its own peak RSS); the JSON line it ends with."""
    out = subprocess.run(
        [sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# one command in a child of a child: RUSAGE_CHILDREN of the middle process is that command's alone
_TIMED = """
import json, resource, subprocess, sys, time
started = time.time()
out = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True, check=True, cwd=sys.argv[2])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": time.time() - started, "cpu": usage.ru_utime + usage.ru_stime,
                  "rss_gb": usage.ru_maxrss / 1024**2, "stdout": out.stdout}))
"""


def timed_command(command: list[str], env: dict | None = None) -> dict:
    """`command` run in REPO as a fresh process: its wall and CPU seconds, peak RSS (GB) and stdout."""
    middle = [sys.executable, "-c", _TIMED, json.dumps(command), str(REPO)]
    out = subprocess.run(middle, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def medians_table(cells: dict[str, list[dict]], first: str, title: str = "") -> str:
    """Markdown: the median wall, CPU and peak RSS of each named list of timed_command cells, and a last row
    of each one's ratio to `first`'s (two lists: the second's)."""
    import statistics

    median = {
        name: {k: statistics.median(c[k] for c in got) for k in ("wall", "cpu", "rss_gb")}
        for name, got in cells.items()
    }
    lines = [f"| {title} | wall | CPU | peak RSS |", "|---|---|---|---|"]
    for name, m in median.items():
        lines.append(f"| {name} | {m['wall']:.2f} s | {m['cpu']:.2f} s | {m['rss_gb']:.2f} GB |")
    for name, m in list(median.items())[1:]:
        ratio = {k: m[k] / median[first][k] for k in ("wall", "cpu", "rss_gb")}
        cells = " | ".join(f"{ratio[k]:.2f}" for k in ("wall", "cpu", "rss_gb"))
        lines.append(f"| ratio {name} / {first} | {cells} |")
    return "\n".join(lines)


# a sweep's runs cut to one step on MiniLM-L1: what a launcher's fixed cost per run is measured on
ONE_STEP_RUNS = [
    "backbone=minilm-l1",
    "trainer.max_steps=1",
    "trainer.eval_every=1",
    "task.dev_size=8",
    "task.test_size=8",
    "task.train_eval_size=8",
]


def one_step_sweep(root: Path, runs: int, *overrides: str) -> float:
    """`python run.py -m` of `runs` one-step runs (seeds 0..runs-1) into <root>/overhead, offline; its wall
    time in seconds."""
    import os
    import time

    started = time.time()
    subprocess.run(
        [sys.executable, "run.py", "-m", f"seed=range(0,{runs})", f"paths.runs_root={root}"]
        + ["sweep_name=overhead", *ONE_STEP_RUNS, *overrides],
        cwd=REPO,
        capture_output=True,
        check=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1"),
    )
    return time.time() - started


def emit(table: str, out: Path | None) -> None:
    """Print the markdown table; append it to `out` (BENCHMARKS.md) when given."""
    print(table)
    if out:
        with out.open("a") as fh:
            fh.write("\n" + table + "\n")


def timed_steps(model, tokenizer, optimizer, steps: int, after_step=None) -> list[float]:
    """2 warm-up + `steps` optimizer steps on BBC News batches of 16 articles cut at 128 tokens, in a
    textbook loop; each step's seconds. `after_step()` runs after each step, before its gradients go."""
    import time

    import torch

    from petsweep.tasks.sources.bbc_news import load

    rows = load(None)["all"]
    times = []
    for step in range(2 + steps):
        chunk = rows[step * 16 : (step + 1) * 16]
        batch = tokenizer(
            [r["text"] for r in chunk], truncation=True, max_length=128, padding=True, return_tensors="pt"
        )
        started = time.perf_counter()
        loss = model(**batch, labels=torch.tensor([r["label"] for r in chunk])).loss
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
        if after_step:
            after_step()
        optimizer.zero_grad(set_to_none=True)
    return times
