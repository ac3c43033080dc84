"""Warm workers: runs one after another in one process end exactly as fresh processes do, and a worker that
dies (kill -9, a segfault) fails its run alone; the slot gets a new worker and the sweep goes on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, run_cli, sweep_argv
from safetensors.torch import load_file

from petsweep.records.status import RunDir


def sweep(tiny_conf, root, *axes, warm=True):
    # one slot: every run goes through the same worker
    return [
        sys.executable,
        *sweep_argv(tiny_conf, root, f"hydra.launcher.warm_workers={str(warm).lower()}", *axes),
    ]


def statuses(root) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((root / "study").glob("*/status.json"))}


def test_runs_after_one_another_in_a_worker_match_fresh_processes(tiny_conf, tmp_path):
    """Runs that differ in method (and so learning rate) and seed, trained back to back in one warm worker
    (tiny-bert has dropout: the RNG matters), end bitwise where each ends in its own fresh `run.py`."""
    axes = ["backbone=tiny-bert", "method=lora,bitfit", "seed=3,4"]
    for mode, warm in (("warm", True), ("fresh", False)):
        out = subprocess.run(
            sweep(tiny_conf, tmp_path / mode, *axes, warm=warm), cwd=REPO, capture_output=True
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    warm, fresh = statuses(tmp_path / "warm"), statuses(tmp_path / "fresh")
    assert sorted(warm) == sorted(fresh) and len(warm) == 4
    assert len({s["pid"] for s in warm.values()}) == 1  # one worker ran all four
    assert len({s["pid"] for s in fresh.values()}) == 4
    for name in warm:
        ours, theirs = RunDir(tmp_path / "warm/study" / name), RunDir(tmp_path / "fresh/study" / name)
        assert ours.result()["metrics"] == theirs.result()["metrics"]
        for key in ("best_dev_score", "best_step", "train_subset_metrics", "tokens"):
            assert ours.result()[key] == theirs.result()[key]
        assert (ours.path / "metrics.jsonl").read_text() == (theirs.path / "metrics.jsonl").read_text()
        a, b = (load_file(r.path / "pet_weights.safetensors") for r in (ours, theirs))
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_a_worker_that_dies_fails_its_run_alone_and_is_replaced(tiny_conf, tmp_path, sig):
    # long enough that the kill lands after the step-20 checkpoint with 100 steps to go; the runs after it
    # and the victim's resume train only the rest (300 steps was 19 s a run at 16 it/s)
    long = ["trainer.max_steps=120", "trainer.save_every=20", "trainer.eval_every=1000", "task.k_shot=40"]
    axes = ["backbone=tiny-bert", "seed=1,2,3", *long]
    proc = subprocess.Popen(sweep(tiny_conf, tmp_path, *axes), cwd=REPO, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not any(
        s["state"] == "RUNNING" and list((tmp_path / "study" / n / "checkpoints").glob("step-*"))
        for n, s in statuses(tmp_path).items()
    ):
        assert time.time() < deadline and proc.poll() is None, "no run started"
        time.sleep(0.2)
    [(victim, status)] = [(n, s) for n, s in statuses(tmp_path).items() if s["state"] == "RUNNING"]
    os.kill(status["pid"], sig)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out

    after = statuses(tmp_path)
    name = signal.Signals(sig).name
    assert after[victim]["state"] == "FAILED"
    assert after[victim]["error"] == f"the worker process running it was killed by signal {sig} ({name})"
    others = [s for n, s in after.items() if n != victim]
    assert len(others) == 2 and all(s["state"] == "COMPLETED" for s in others)
    assert status["pid"] not in {s["pid"] for s in others if s["updated"] > status["updated"]}  # replaced
    # the sweep's line names the run and what differs in it (its seed), then the error
    line = rf"{victim} +\[seed=\d\] FAILED: the worker process running it was killed by signal"
    assert re.search(line, out), out

    again = run_cli(*sweep(tiny_conf, tmp_path, *axes)[1:])
    assert again.returncode == 0, again.stdout[-3000:]
    assert "3 runs (2 done, 1 failed); launching 1" in again.stdout
    assert "resumed from" in (tmp_path / "study" / victim / "train.log").read_text()


def test_each_run_of_a_worker_records_its_own_peak_memory_and_start_up(tiny_conf, tmp_path):
    """Full fine-tuning then BitFit in one worker: BitFit's peak is its own, below full FT's (it read the
    process's ru_maxrss, full FT's peak, before), and its time to the first step counts from its own job's
    start, within its wall time (it counted from the worker's start); each provenance.json holds its run's
    overrides (it held the worker's argv only)."""
    axes = ["backbone=tiny-bert", "method=full,bitfit", "trainer.max_steps=2"]
    out = subprocess.run(sweep(tiny_conf, tmp_path, *axes), cwd=REPO, capture_output=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    results = {
        r["method"]: r
        for r in (RunDir(p.parent).result() for p in (tmp_path / "study").glob("*/result.json"))
    }
    assert len({s["pid"] for s in statuses(tmp_path).values()}) == 1  # one worker ran both
    assert results["bitfit"]["peak_memory_mb"] < results["full"]["peak_memory_mb"]
    # the worker paid its imports in the first run; BitFit's start-up is its own load (before: 15.8 s vs 3.3)
    assert 0 < results["bitfit"]["time_to_first_step_s"] < results["bitfit"]["wall_time_s"]
    for path in (tmp_path / "study").glob("*/provenance.json"):  # its own overrides, not the worker's argv
        provenance = json.loads(path.read_text())
        method = RunDir(path.parent).result()["method"]
        assert f"method={method}" in provenance["overrides"], provenance["overrides"]
        assert "petsweep/run/worker.py" in " ".join(provenance["argv"])


def test_a_worker_exits_only_where_a_run_of_its_job_still_reads_running_under_it(tmp_path):
    """A run whose end the worker could not record (a full disk) still reads RUNNING under the worker's pid:
    the worker exits so that it reads INTERRUPTED (worker.stands_behind_a_run reads the job's status.json)."""
    from petsweep.run.worker import stands_behind_a_run

    mine, other = RunDir(tmp_path / "mine"), RunDir(tmp_path / "other")
    mine.set_status("RUNNING")  # claimed by this process, never ended
    other.set_status("RUNNING", pid=os.getpid() + 1)  # another process's run
    job = [{"run_dir": str(run.path)} for run in (other, mine)]
    assert stands_behind_a_run(job)
    mine.set_status("FAILED", error="RuntimeError: boom")  # its end recorded
    assert not stands_behind_a_run(job)
    assert not stands_behind_a_run([{"run_dir": str(tmp_path / "never-claimed")}])
