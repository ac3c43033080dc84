"""Sweep machinery: planning a synthetic 10,000-run sweep; the local launcher's per-run overhead.

    .venv/bin/python benchmarks/plan_sweep.py [--out BENCHMARKS.md]

Rows:
  - `petsweep plan` of 10,000 runs (4 backbones x 25 LoRA ranks x 100 seeds), a fresh process, wall time:
    composition, validation, run identity, status from disk, parameter counts (meta device) and cost.
  - Hydra composing the same runs one by one (the compose API, as Hydra's own sweep validation does):
    timed on the first 300 runs and scaled to 10,000.
  - the local launcher: a 4-run sweep of 1-step runs (`python run.py -m`); overhead per run = the sweep's
    wall time / runs - the runs' own in-process time (start-up of a fresh Python, imports, composition).

Planning at scale (issue #25), `--scale 10000,100000 [--base REV] [--resume-up-to N]`: the issue's sweep shape
(method=prompt,prefix x 5 lengths x 10 learning rates x N/100 seeds), measured for this tree and for the code
at REV (default: the commit before #25's planning changes, exported with `git archive` into a temp dir and run
there with the same interpreter) side by side, each command in a fresh process (wall time, peak RSS):
  - `petsweep plan` of the sweep with no run on disk;
  - `petsweep plan` of the sweep when every run is finished (synthetic records in petsweep's layout:
    status.json, result.json with config and config_sha256, config.yaml, provenance.json; written once per N
    and shared: both versions give the runs the same ids), costs calibrated from the finished runs;
  - a resume of the finished sweep: `python run.py -m <the same axes>`, which launches nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    from petsweep.compose import compose

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


BASE = "eb4a1b8^"  # before #25's planning changes (the plan's costs were already linear there, 583027b)


def scale_axes(runs: int, root: Path) -> list[str]:
    """The issue's sweep: prompt/prefix x 5 lengths x 10 lrs x runs/100 seeds."""
    lrs = ",".join(f"{0.01 * (i + 1):.2f}" for i in range(10))
    return [
        "method=prompt,prefix",
        "method.length=1,2,4,8,16",
        f"method.lr={lrs}",
        f"seed=range(0,{max(1, runs // 100)})",
        f"paths.runs_root={root}",
        "sweep_name=scale",
    ]


def timed(command: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in GB) of `command` in a fresh process; it must succeed. On a
    shared machine the CPU time is the steadier number."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = str(cwd)  # the version under test, not the editable install's tree
    started = time.time()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed in {cwd}: {stderr.decode()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return time.time() - started, cpu, usage.ru_maxrss / 1e6  # ru_maxrss is in KB on Linux


def write_finished(axes: list[str]) -> int:
    """Every run of the sweep as a finished run in petsweep's layout (no weights), written plainly."""
    import hashlib

    import yaml

    from launchers.expand import expand
    from launchers.planning import plan
    from petsweep.compose import compose
    from petsweep.model.resolve import semantic_config

    runs = plan(expand(axes), compose)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    for i, run in enumerate(runs):
        run.path.mkdir(parents=True, exist_ok=True)
        text = yaml.dump(run.cfg, Dumper=dumper, sort_keys=False).encode()
        (run.path / "config.yaml").write_bytes(text)
        result = {
            "status": "COMPLETED",
            "run_id": run.run_hash,
            "backbone": run.cfg["backbone"]["name"],
            "method": run.cfg["method"]["name"],
            "task": run.cfg["task"]["name"],
            "seed": run.cfg["seed"],
            "metric": "accuracy",
            "score": 0.5 + (i % 100) / 1000,
            "steps": 100,
            "train_time_s": 30.0,
            "dev_eval_time_s": 2.0,
            "final_eval_time_s": 3.0,
            "total_params": run.extra["total_params"],
            "trainable_params": run.extra["trainable_params"],
            "device": "cpu",
            "time_to_first_step_s": 12.0,
            "config": semantic_config(run.cfg),
            "config_sha256": hashlib.sha256(text).hexdigest(),
        }
        (run.path / "result.json").write_text(json.dumps(result))
        (run.path / "provenance.json").write_text(json.dumps({"git_commit": "0" * 40, "host": "synthetic"}))
        status = {"state": "COMPLETED", "host": "synthetic", "pid": 1, "updated": time.time()}
        (run.path / "status.json").write_text(json.dumps(status))
    return len(runs)


def scale(
    sizes: list[int], base: str, resume_up_to: int, finished_up_to: int, skip_fresh: bool = False
) -> str:
    """The side-by-side table of planning at scale (issue #25)."""
    python = sys.executable
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "base"
        old.mkdir()
        archive = subprocess.run(["git", "archive", base], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        commit = subprocess.run(
            ["git", "rev-parse", "--short", base], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        for n in sizes:
            fresh = scale_axes(n, Path(tmp) / f"new{n}")
            plan = [python, "-m", "petsweep.cli", "plan"]
            for name, tree in (("before", old), ("after", REPO)):
                if skip_fresh:
                    break
                rows.append((n, "plan, no run on disk", name, *timed([*plan, *fresh], tree)))
                print(rows[-1], flush=True)
            if n > finished_up_to:
                continue
            done = scale_axes(n, Path(tmp) / f"done{n}")
            started = time.time()
            written = write_finished(done)
            print(f"{written} finished runs written in {time.time() - started:.0f} s", flush=True)
            for name, tree in (("before", old), ("after", REPO)):
                if name == "before" and n > resume_up_to:
                    continue  # the old code's plan and resume of a finished sweep: up to --resume-up-to
                rows.append((n, "plan, every run finished", name, *timed([*plan, *done], tree)))
                print(rows[-1], flush=True)
                if n <= resume_up_to or name == "after":
                    rows.append(
                        (
                            n,
                            "resume of the finished sweep",
                            name,
                            *timed([python, "run.py", "-m", *done], tree),
                        )
                    )
                    print(rows[-1], flush=True)
                    # the first resume (or plan) of runs written without index lines builds the sweep's index;
                    # the next one reads it (code without the index in planning reads the files again)
                    rows.append(
                        (
                            n,
                            "resume again (the sweep's index current)",
                            name,
                            *timed([python, "run.py", "-m", *done], tree),
                        )
                    )
                    print(rows[-1], flush=True)
            shutil.rmtree(Path(tmp) / f"done{n}")
    table = {}
    for n, what, name, wall, cpu, rss in rows:
        table.setdefault((n, what), {})[name] = (wall, cpu, rss)
    lines = [
        f"Planning at scale (issue #25), {os.cpu_count()} CPUs; before = {commit}, after = this tree",
        "",
        "| runs | command | before: wall | CPU | peak RSS | after: wall | CPU | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (n, what), versions in table.items():
        cells = [
            f"{versions[v][0]:.1f} s | {versions[v][1]:.1f} s | {versions[v][2]:.2f} GB"
            if v in versions
            else "not run | | "
            for v in ("before", "after")
        ]
        lines.append(f"| {n:,} | {what} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--scale", default=None, help="planning at scale (#25): run counts, e.g. 10000,100000"
    )
    parser.add_argument("--base", default=BASE, help="the code to compare with (a git revision)")
    parser.add_argument(
        "--resume-up-to", type=int, default=10**9, help="old code: finished-sweep plan, resume up to N"
    )
    parser.add_argument("--finished-up-to", type=int, default=10**9, help="finished sweeps up to this N")
    parser.add_argument("--finished-only", action="store_true", help="skip the plans with no run on disk")
    args = parser.parse_args()
    if args.scale:
        sizes = [int(float(n)) for n in args.scale.split(",")]
        table = scale(sizes, args.base, args.resume_up_to, args.finished_up_to, args.finished_only)
        print(table)
        if args.out:
            with args.out.open("a") as fh:
                fh.write("\n" + table + "\n")
        return
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
