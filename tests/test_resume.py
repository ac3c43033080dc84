"""Resume parity: a run interrupted (kill -9, or a crash) and rerun ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from petsweep import checkpoint
from petsweep.app import run
from petsweep.config import compose
from petsweep.identity import run_dir
from petsweep.status import COMPLETED, FAILED, RUNNING, RunDir

COMPARED = ("score", "metrics", "train_subset_metrics", "best_step", "best_dev_score", "steps", "tokens")


def _assert_same_run(a: RunDir, b: RunDir) -> None:
    ra, rb = a.result(), b.result()
    assert {k: ra[k] for k in COMPARED} == {k: rb[k] for k in COMPARED}
    wa, wb = load_file(a.path / "pet_weights.safetensors"), load_file(b.path / "pet_weights.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = lambda d: [json.loads(x) for x in d.metrics_file.read_text().splitlines()]  # noqa: E731
    assert rows(a) == rows(b)


def test_crash_then_rerun_matches_uninterrupted(tiny, tmp_path, monkeypatch):
    extra = ("trainer.max_steps=12", "trainer.eval_every=4", "trainer.save_every=4", "method.dropout=0.1")
    reference = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/reference"))
    run(reference)

    crashing = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/crashing"))
    real_save, saves = checkpoint.save, []

    def save_then_crash(*args, **kwargs):
        saves.append(real_save(*args, **kwargs))
        if len(saves) == 2:
            raise KeyboardInterrupt("simulated preemption after the step-8 checkpoint")
        return saves[-1]

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run(crashing)
    assert RunDir(run_dir(crashing)).state() == FAILED
    monkeypatch.setattr(checkpoint, "save", real_save)
    run(crashing)  # resumes from step 8
    assert "resumed from step-00000008" in (RunDir(run_dir(crashing)).path / "train.log").read_text()
    _assert_same_run(RunDir(run_dir(reference)), RunDir(run_dir(crashing)))


def _step_of(path) -> int:
    return int(path.name.split("-")[1]) if path is not None else 0


@pytest.mark.slow
def test_kill_9_at_five_random_steps_then_rerun_is_bit_identical(tiny, tmp_path):
    extra = ["trainer.max_steps=600", "trainer.eval_every=100", "trainer.save_every=10", "task.k_shot=40",
             "method.dropout=0.1"]
    killed_args = tiny("encoder", *extra, f"paths.runs_root={tmp_path}/killed")
    killed = RunDir(run_dir(compose(killed_args)))
    kill_points = sorted(random.Random(7).sample(range(20, 560, 10), 5))
    for target in kill_points:  # each attempt resumes from the previous kill's checkpoint, then dies again
        proc = subprocess.Popen([sys.executable, "run.py", *killed_args], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while _step_of(checkpoint.latest(killed.checkpoints)) < target:
            assert proc.poll() is None and time.time() < deadline, f"run ended before step {target}"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert killed.state() == RUNNING  # what a kill -9 leaves: no COMPLETED, a checkpoint to resume from
    done = subprocess.run([sys.executable, "run.py", *killed_args], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (killed.path / "train.log").read_text().count("resumed from") == 5

    reference_args = tiny("encoder", *extra, f"paths.runs_root={tmp_path}/reference")
    subprocess.run([sys.executable, "run.py", *reference_args], cwd=REPO, check=True, capture_output=True)
    assert killed.state() == COMPLETED
    _assert_same_run(RunDir(run_dir(compose(reference_args))), killed)
