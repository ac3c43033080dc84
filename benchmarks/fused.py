"""Fused training against the same runs one after another in one warm process, side by side.

    .venv/bin/python benchmarks/fused.py [--steps 150] [--shapes "4 x 32"] [--threads 2] [--repeat 3]
        [--before] [--no-loop] [--no-memory] [--out BENCHMARKS.md]

8 LoRA runs on MiniLM-L6 (ranks 1..32, seeds 0..7, backbone.dropout=0, BBC News), at two shapes of a
run-step: 4 x 32 tokens and 16 x 64. For each shape, in one process (what a warm worker does): the 8 runs
one after another through petsweep.run.app.run, then the same 8 as one fused group through petsweep.run.group,
then again fused with the members' LoRA products one per member (petsweep.train.fused.BATCHED = False, the
loop before the batched products) unless --no-loop, and with --before as the group trained before its members
shared their tokenised data and ran a LoRA layer as one update (petsweep.train.fused.share_inputs and
FusedLoRA._whole switched off). `--repeat N`: N rounds of every column, each round in another order (the
machine's load drifts); the table gives medians of the times and of each round's ratios, and each round's
line is printed as it ends. The machine's load (`uptime`) is printed before and after. Wall
time covers load + train + eval of all 8; training time is the sum of the runs' own train_time_s (a fused
run's is the group's). A 2-step run first pays the process's first-call costs, for neither side. The
planner's choice for each shape (launchers.fusion, default budget) is printed beside it. Peak memory: a
fresh process training the fused group against a fresh process training one run alone, times 8 (8 solo
processes side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.common import emit  # noqa: E402

RANKS = [1, 2, 4, 8, 16, 32, 3, 6]
SHAPES = {"4 x 32": (4, 32), "16 x 64": (16, 64)}


THREADS = [2]  # trainer.num_threads of every run (--threads)


def configs(root: Path, batch: int, length: int, steps: int) -> list[dict]:
    from petsweep.compose import compose
    from petsweep.spec.identity import plain

    return [
        plain(
            compose(
                [
                    "backbone=minilm-l6",
                    "backbone.dropout=0",
                    "method=lora",
                    f"method.r={r}",
                    f"seed={seed}",
                    f"trainer.batch_size={batch}",
                    f"task.max_length={length}",
                    f"trainer.max_steps={steps}",
                    f"trainer.eval_every={steps}",
                    f"trainer.save_every={steps}",
                    f"trainer.num_threads={THREADS[0]}",
                    "task.dev_size=32",
                    "task.test_size=32",
                    "task.train_eval_size=32",
                    f"paths.runs_root={root}",
                ]
            )
        )
        for seed, r in enumerate(RANKS)
    ]


def one_after_another(cfgs: list[dict]) -> tuple[float, list[dict]]:
    from omegaconf import OmegaConf

    from petsweep.run.app import run

    started = time.time()
    results = [run(OmegaConf.create(cfg)) for cfg in cfgs]
    return time.time() - started, results


def fused(cfgs: list[dict], batched: bool = True, before: bool = False) -> tuple[float, list[dict]]:
    """The group; `batched=False`: the per-member LoRA loop; `before`: without the shared tokenisation and the
    one-update LoRA layer (the group before them)."""
    from petsweep.model.resolve import run_dir
    from petsweep.records.status import RunDir
    from petsweep.run.group import run_group
    from petsweep.train import fused as fused_module

    started = time.time()
    fused_module.BATCHED = batched
    share_inputs, whole = fused_module.share_inputs, fused_module.FusedLoRA._whole
    if before:
        fused_module.share_inputs = lambda prepared, reference: False
        fused_module.FusedLoRA._whole = lambda self, *args: None
    try:
        codes = run_group(cfgs)
    finally:
        fused_module.BATCHED = True
        fused_module.share_inputs, fused_module.FusedLoRA._whole = share_inputs, whole
    assert codes == [0] * len(cfgs), codes
    return time.time() - started, [RunDir(run_dir(cfg)).result() for cfg in cfgs]


def uptime() -> str:
    """The machine's load averages (1, 5, 15 minutes), as `uptime` says them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def planner_choice(cfgs: list[dict]) -> str:
    """What launchers.fusion does with these runs on this machine: `groups of [8]`, or `alone (<why>)`."""
    from launchers.fusion import token_budget, units
    from launchers.planning import PlannedRun
    from petsweep.model.resolve import run_dir
    from petsweep.records.status import State

    runs = [PlannedRun([], cfg, "", run_dir(cfg), State.NEW) for cfg in cfgs]
    found = units(runs, fuse=8, budget=token_budget(None, 0))
    groups = [len(u.runs) for u in found if len(u.runs) > 1]
    return f"groups of {groups}" if groups else f"alone ({found[0].why})"


def peak_rss_mb(mode: str, batch: int, length: int, steps: int) -> float:
    """Peak RSS of a fresh process training the group (`fused`) or one run (`solo`)."""
    out = subprocess.run(
        [sys.executable, __file__, "--measure", mode, "--batch", str(batch), "--length", str(length)]
        + ["--steps", str(steps)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def measure(mode: str, batch: int, length: int, steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = configs(Path(tmp), batch, length, steps)
        fused(cfgs) if mode == "fused" else one_after_another(cfgs[:1])
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _cells(rounds: list[dict], name: str) -> str:
    """A column's median wall time, and the medians of its rounds' wall and training ratios to `alone`."""
    if name not in rounds[0]:
        return "| | | "
    med = statistics.median
    wall = med(r[name][0] for r in rounds)
    wall_ratio = med(r[name][0] / r["alone"][0] for r in rounds)
    train_ratio = med(r[name][1] / r["alone"][1] for r in rounds)
    return f"| {wall:.1f} s | {wall_ratio:.2f} | {train_ratio:.2f} "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--measure", choices=("fused", "solo"), default=None)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--threads", type=int, default=2, help="trainer.num_threads of every run")
    parser.add_argument("--no-loop", action="store_true", help="skip the fused per-member-loop column")
    parser.add_argument(
        "--before", action="store_true", help="add the column of the group before #25's sharing"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS processes")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every column; medians reported")
    args = parser.parse_args()
    THREADS[0] = args.threads
    if args.measure:
        return measure(args.measure, args.batch, args.length, args.steps)
    load_before = uptime()
    print(f"load before: {load_before}", flush=True)
    with (
        tempfile.TemporaryDirectory() as tmp
    ):  # warm-up: imports, caches and first-call costs paid by neither
        one_after_another(configs(Path(tmp), 4, 32, 2)[:1])
    columns = {
        "alone": lambda root, cfgs: one_after_another(cfgs),
        "fused": lambda root, cfgs: fused(cfgs),
        "before": lambda root, cfgs: fused(cfgs, before=True),
        "loop": lambda root, cfgs: fused(cfgs, batched=False),
    }
    names = ["alone", "fused"] + ["before"] * args.before + ["loop"] * (not args.no_loop)
    rows = []
    for label in args.shapes:
        batch, length = SHAPES[label]
        rounds = []  # per round: name -> (wall, training)
        for k in range(args.repeat):
            order = names[k % len(names) :] + names[: k % len(names)]
            tmp = Path(tempfile.mkdtemp())
            got = {}
            try:
                for name in order:
                    wall, results = columns[name](tmp / name, configs(tmp / name, batch, length, args.steps))
                    train = (sum if name == "alone" else max)(r["train_time_s"] for r in results)
                    got[name] = (wall, train)  # a fused run's train_time_s is the group's
            finally:
                shutil.rmtree(tmp)
            rounds.append(got)
            print(
                f"round {k + 1} ({label}, order {', '.join(order)}): "
                + "; ".join(
                    f"{n} {got[n][0]:.1f} s wall, {got[n][1]:.1f} s training"
                    + (
                        f" ({got[n][0] / got['alone'][0]:.3f}, {got[n][1] / got['alone'][1]:.3f})"
                        if n != "alone"
                        else ""
                    )
                    for n in names
                )
                + f"; load {uptime()}",
                flush=True,
            )
        med = statistics.median
        alone_wall, alone_train = med(r["alone"][0] for r in rounds), med(r["alone"][1] for r in rounds)
        fused_train = med(r["fused"][1] for r in rounds)
        planned = planner_choice(configs(Path(tempfile.gettempdir()), batch, length, args.steps))
        rows.append(
            f"| {label} | {alone_wall:.1f} s {_cells(rounds, 'fused')}| {alone_train:.1f} s "
            f"| {fused_train:.1f} s "
            f"{_cells(rounds, 'before')}{_cells(rounds, 'loop')}| {planned} |"
        )
    memory = []
    if not args.no_memory:
        solo_mb = peak_rss_mb("solo", 4, 32, args.steps)
        group_mb = peak_rss_mb("fused", 4, 32, args.steps)
        memory = [
            "",
            "| peak RSS at 4 x 32 | MB |",
            "|---|---|",
            f"| one run alone, one process | {solo_mb:.0f} |",
            f"| 8 solo processes side by side (8 x that) | {8 * solo_mb:.0f} |",
            f"| the fused group of 8, one process | {group_mb:.0f} |",
        ]
    table = "\n".join(
        [
            f"8 MiniLM-L6 LoRA runs (ranks {', '.join(map(str, RANKS))}), {args.steps} steps each, "
            f"one process, {args.threads} thread(s) per run, median of {args.repeat} round(s); load (uptime) "
            f"before: {load_before}, after: {uptime()}",
            "",
            "| run-step | one after another | fused | wall ratio | training ratio | training, one after "
            "another | training, fused | before #25's sharing | its wall ratio | its training ratio | fused, "
            "per-member loop | its wall ratio | its training ratio | planner (default budget) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            *memory,
        ]
    )
    emit(table, args.out)


if __name__ == "__main__":
    main()
