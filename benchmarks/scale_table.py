"""Issue #25's table in one run: plan, status, collect, re-collect and resume at N runs, before and after.

    .venv/bin/python benchmarks/scale_table.py --base 036fb93 --runs 1000 10000 100000

The issue measured, at 036fb93, the sweep method=prompt,prefix x 5 lengths x 10 lrs x N/100 seeds: `petsweep
plan` with no run on disk, `status` of a runs root, `collect`, a re-collect after 1% of the runs changed,
and a resume of the finished sweep (`run.py -m`, which launches nothing). This script measures the same
commands, as a user types them (`python -m petsweep.cli ...`, `python run.py -m ...`), for two versions side
by side: before (`--base`, exported with `git archive`) and after (`--after`, default HEAD, exported too so
that edits to the checkout do not move the sweep index's fingerprint meanwhile). Each cell is one fresh
process: wall time, CPU time (the steadier number on a shared machine) and peak RSS, imports included.

The finished runs are synthetic, in petsweep's layout (status.json, result.json with every record field and
the config, config.yaml, provenance.json, progress.json, metrics.jsonl, train.log, heartbeat, the claim
lock, checkpoints/), planned, named and configured by each version's own code (benchmarks/scale_runs.py: the
versions' config keys differ, so each reads only its own runs as finished), written without index lines as
a petsweep from before the index left them. Each version's cells run in order; the 1% change (result.json
and status.json rewritten through RunDir, as a run writes them) comes before the re-collect. After's first
`status` builds its index from the run dirs (its own column). A resume runs only after the version's plan
of the finished sweep said `0 to run`. `--before-finished-up-to` leaves out before's plan of a finished
sweep above that N (quadratic in N at 036fb93: the issue estimated 45 minutes at 10^5).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.index_scale import _export, _record, change_with  # noqa: E402
from benchmarks.plan_sweep import scale_axes  # noqa: E402

# the cells each version runs, in this order (after also runs the index's first read and a warm collect)
BEFORE_CELLS = ("plan", "plan_finished", "resume", "status", "collect", "recollect", "status_changed")
AFTER_CELLS = (
    "plan",
    "first_read",
    "status",
    "collect",
    "collect_warm",
    "recollect",
    "status_changed",
    "plan_finished",
    "resume",
)
SAME_COMMAND = {
    "first_read": "status",
    "collect_warm": "collect",
    "recollect": "collect",
    "status_changed": "status",
}
LABELS = {
    "plan": "`plan`, no run on disk",
    "first_read": "first `status` (builds the index)",
    "status": "`status`",
    "collect": "`collect -o` (after: the first, which keeps its table)",
    "collect_warm": "`collect -o` again",
    "recollect": "re-collect after 1% changed",
    "status_changed": "`status` after 1% changed",
    "plan_finished": "`plan`, every run finished",
    "resume": "resume of the finished sweep",
}


def write_runs(axes: list[str], tree: Path, tmp: Path) -> int:
    """Every run of the sweep as a finished run, planned and written by `tree`'s code (scale_runs.py)."""
    from petsweep.compose import compose
    from petsweep.model.resolve import semantic_config

    template = tmp / "record.json"  # every field of this tree's records; the writer puts each run's own in
    template.write_text(json.dumps(_record(semantic_config(compose([])), 0), default=str))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(tree))
    writer = [sys.executable, str(REPO / "benchmarks" / "scale_runs.py"), str(template), *axes]
    out = subprocess.run(writer, cwd=tree, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"writing the runs failed in {tree}: {out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1])


def timed(command: list[str], tree: Path, timeout: float) -> dict:
    """One command of `tree`'s code in a fresh process: wall, CPU, peak RSS and a plan's `total:` line."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = str(tree)  # the version under test, not the editable install's tree
    started = time.time()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(command, cwd=tree, env=env, stdout=stdout, stderr=stderr)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return {"stopped": timeout}
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # one_process: this command is its only child
        stdout.seek(0)
        stderr.seek(0)
        text, errors = stdout.read().decode(), stderr.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:5])} ... failed in {tree}: {errors[-2000:]}")
    lines = text.strip().splitlines() or [""]
    cpu = usage.ru_utime + usage.ru_stime
    total = next((line for line in lines if line.startswith("total:")), None)  # a plan's count line
    return {"wall": time.time() - started, "cpu": cpu, "rss_gb": usage.ru_maxrss / 1024**2, "total": total}


def commands(python: str, axes: list[str], empty_axes: list[str], root: Path, out: Path) -> dict:
    cli = [python, "-m", "petsweep.cli"]
    return {
        "plan": [*cli, "plan", *empty_axes],
        "plan_finished": [*cli, "plan", *axes],
        "resume": [python, "run.py", "-m", *axes],
        "status": [*cli, "status", str(root)],
        "collect": [*cli, "collect", str(root), "-o", str(out)],
    }


def measure(version: str, cells: tuple, tree: Path, n: int, args) -> dict:
    """The cells of one version at N, in order, on runs its own code wrote; the 1% change comes before
    "recollect". A resume runs only where this version's plan of the finished sweep (at this N, or at a
    smaller one) said nothing is to run: a resume that launched would train the runs for real."""
    root = args.tmp / f"{version}-runs{n}"
    axes, empty = scale_axes(n, root), scale_axes(n, args.tmp / f"{version}-empty{n}")
    started = time.time()
    written = write_runs(axes, tree, args.tmp)
    print(f"{version}: {written} finished runs written in {time.time() - started:.0f} s", flush=True)
    run = commands(sys.executable, axes, empty, root, args.tmp / f"{version}{n}.parquet")
    got = {}
    for cell in cells:
        if cell == "plan_finished" and version == "before" and n > args.before_finished_up_to:
            continue
        if cell == "resume" and not _nothing_to_run(got.get("plan_finished"), version, args):
            print(f"  {version} resume left out: its plan did not say 0 to run", flush=True)
            continue
        if cell == "recollect":
            changed = change_with(root / "scale", 0.01, args.trees["after"])
            print(f"  {changed} runs trained again", flush=True)
        got[cell] = one_process(run[SAME_COMMAND.get(cell, cell)], tree, args.timeout)
        print(f"  {version} {cell}: {got[cell]}", flush=True)
    shutil.rmtree(root)
    return got


def _nothing_to_run(plan_finished: dict | None, version: str, args) -> bool:
    """Whether this version's plan of the finished sweep said `0 to run` (remembered for larger N)."""
    if plan_finished is not None:
        args.checked[version] = bool(plan_finished.get("total")) and " 0 to run" in plan_finished["total"]
    return args.checked.get(version, False)


def one_process(command: list[str], tree: Path, timeout: float) -> dict:
    """`timed` in a process of its own, so that RUSAGE_CHILDREN's peak RSS is this command's alone."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from benchmarks.scale_table import timed; "
        "print(json.dumps(timed(json.loads(sys.argv[2]), __import__('pathlib').Path(sys.argv[3]), "
        "float(sys.argv[4]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO), json.dumps(command), str(tree), str(timeout)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def cell_text(got: dict) -> str:
    if "stopped" in got:
        return f"> {got['stopped']:.0f} s (stopped)"
    return f"{got['wall']:.1f} s / {got['cpu']:.1f} s / {got['rss_gb']:.2f} GB"


def table(results: dict, base: str, after: str) -> str:
    keys = [k for k in LABELS if any(k in v for per_n in results.values() for v in per_n.values())]
    lines = [
        f"Issue #25's table, one run: before = {base}, after = {after}; {os.cpu_count()} CPUs; "
        "cells: wall / CPU / peak RSS of one fresh process",
        "",
        "| runs | version | " + " | ".join(LABELS[k] for k in keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for n, versions in results.items():
        for version, got in versions.items():
            cells = " | ".join(cell_text(got[k]) if k in got else "not run" for k in keys)
            lines.append(f"| {n:,} | {version} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--base", default="036fb93", help="before: a git revision (default: the issue's)")
    parser.add_argument("--after", default="HEAD", help="after: a git revision (default HEAD)")
    parser.add_argument("--runs", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--before-finished-up-to", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a cell may take")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/petsweep-scale-table"))
    args = parser.parse_args()
    shutil.rmtree(args.tmp, ignore_errors=True)
    revisions = (("before", args.base), ("after", args.after))
    trees = {name: _export(rev, args.tmp / name) for name, rev in revisions}
    short = {
        name: subprocess.run(
            ["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        for name, rev in revisions
    }
    args.trees, args.checked = trees, {}
    results: dict = {}
    for n in args.runs:
        results[n] = {
            "before": measure("before", BEFORE_CELLS, trees["before"], n, args),
            "after": measure("after", AFTER_CELLS, trees["after"], n, args),
        }
        print(table(results, short["before"], short["after"]), flush=True)


if __name__ == "__main__":
    main()
