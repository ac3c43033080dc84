"""The process-per-run start (hydra.launcher.warm_workers=false) hands each run's process the run as the plan
resolved it (a ResolvedRun), as warm workers, rank children and SLURM tasks get it: the process composes,
validates and hashes nothing the plan did (it ran `python run.py <overrides>` and composed, validated and
hashed its run again, R23 F9), and its records are a warm worker's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import COUNT_COMPOSITIONS_AND_VALIDATIONS, REPO, sweep_argv

from petsweep.records.status import RunDir

# every process of the sweep (the user's, each run's) counts its compositions (Hydra's config loader), its
# validations (resolve_run, outermost calls) and the ids and directories it computes for a run to execute
# (unvalidated_run, which resolved_run calls: run.py's preflight), written to <dir>/<pid>.json at its exit
COUNTING = (
    """
import atexit, json, os, sys
sys.path.insert(0, {repo!r})
out = {out!r}
counts = {{"compositions": 0, "validations": 0, "ids": 0}}
"""
    + COUNT_COMPOSITIONS_AND_VALIDATIONS.replace("{", "{{").replace("}", "}}")
    + """
real_unvalidated = where.unvalidated_run
def unvalidated_run(*args, **kwargs):
    counts["ids"] += 1
    return real_unvalidated(*args, **kwargs)
where.unvalidated_run = unvalidated_run
atexit.register(lambda: open(os.path.join(out, f"{{os.getpid()}}.json"), "w").write(json.dumps(counts)))
"""
)


def measured(record: dict) -> dict:
    """A result record without what two processes that computed the same differ in: times, rates, memory."""
    return {k: v for k, v in record.items() if not (k.endswith("_s") or "memory" in k)}


def sweep(tiny_conf, root, warm: bool, env: dict | None = None, extra=()) -> subprocess.CompletedProcess:
    warm_workers = f"hydra.launcher.warm_workers={str(warm).lower()}"
    argv = sweep_argv(tiny_conf, root, "backbone=tiny-bert", "seed=1,2", warm_workers, *extra)
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def runs(root) -> dict[str, RunDir]:
    return {p.parent.name: RunDir(p.parent) for p in sorted((root / "study").glob("*/status.json"))}


# budget=: the run's id and record need what the budget chose, read from the spec the run was typed to (it was
# solved again when the record was written, after training: a second validation, R23 review 2026-12-06 F2)
@pytest.mark.parametrize("extra", [(), ("method=lora", "budget=bitfit")], ids=["plain", "budget"])
def test_a_fresh_process_executes_the_planned_run_and_records_what_a_warm_worker_does(
    tiny_conf, tmp_path, extra
):
    counts_dir, site = tmp_path / "counts", tmp_path / "site"
    counts_dir.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(COUNTING.format(repo=str(REPO), out=str(counts_dir)))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    # into the same runs root (config.yaml names it), one sweep after the other
    sweep(tiny_conf, tmp_path / "runs", warm=True, extra=extra)
    (tmp_path / "runs").rename(tmp_path / "warm")
    sweep(tiny_conf, tmp_path / "runs", warm=False, env={"PYTHONPATH": path}, extra=extra)

    fresh, warm = runs(tmp_path / "runs"), runs(tmp_path / "warm")
    assert sorted(fresh) == sorted(warm) and len(fresh) == 2  # the same ids
    counts = {int(p.stem): json.loads(p.read_text()) for p in counts_dir.glob("*.json")}
    children = {run.status()["pid"] for run in fresh.values()}
    assert len(children) == 2 and children <= set(counts), (children, counts)
    for pid in children:  # its one validation types the planned run; before: 1 composition, 1 id computed
        assert counts[pid] == {"compositions": 0, "validations": 1, "ids": 0}, counts[pid]
    for name, run in fresh.items():
        ours, theirs = run.result(), warm[name].result()
        assert ours["status"] == "COMPLETED"
        assert measured(ours) == measured(theirs)
        assert (run.path / "config.yaml").read_text() == (warm[name].path / "config.yaml").read_text()
        provenance = [json.loads((r.path / "provenance.json").read_text()) for r in (run, warm[name])]
        assert provenance[0]["overrides"] == provenance[1]["overrides"]  # the run's own, not the argv
        assert provenance[0]["torch_threads"] == provenance[1]["torch_threads"]  # the slot's threads
