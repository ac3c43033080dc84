"""Resume parity: a run interrupted (kill -9, a crash) and rerun ends exactly where an unbroken one does."""

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
from conftest import REPO, crash_after_second_save
from safetensors.torch import load_file

from petsweep.compose import compose
from petsweep.model.resolve import run_dir
from petsweep.records.status import COMPLETED, FAILED, RUNNING, RunDir
from petsweep.run.app import run
from petsweep.train import checkpoint

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
    crash_after_second_save(crashing, monkeypatch)
    assert RunDir(run_dir(crashing)).state() == FAILED
    run(crashing)  # resumes from step 8
    assert "resumed from step-00000008" in (RunDir(run_dir(crashing)).path / "train.log").read_text()
    _assert_same_run(RunDir(run_dir(reference)), RunDir(run_dir(crashing)))


def _step_of(path) -> int:
    return int(path.name.split("-")[1]) if path is not None else 0


@pytest.mark.slow
def test_kill_9_at_five_random_steps_then_rerun_is_bit_identical(tiny, tmp_path):
    extra = [
        # five kills need five checkpoints and steps between them, not 600 steps: the reference and the
        # killed run each trained all of them (600 steps were 80 s of this test's 107)
        "trainer.max_steps=200",
        "trainer.eval_every=40",
        "trainer.save_every=10",
        "task.k_shot=40",
        "method.dropout=0.1",
    ]
    killed_args = tiny("encoder", *extra, f"paths.runs_root={tmp_path}/killed")
    killed = RunDir(run_dir(compose(killed_args)))
    kill_points = sorted(random.Random(7).sample(range(20, 160, 10), 5))  # 50 steps to go after the last
    for target in kill_points:  # each attempt resumes from the previous kill's checkpoint, then dies again
        proc = subprocess.Popen(
            [sys.executable, "run.py", *killed_args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
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

    reference = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/reference"))
    run(reference)  # in this process, as the other parity tests here: no second import of torch to pay
    assert killed.state() == COMPLETED
    _assert_same_run(RunDir(run_dir(reference)), killed)


def test_signal_during_a_save_checkpoints_once_and_resumes_with_parity(tiny, tmp_path, monkeypatch):
    """SLURM's USR2 landing while the due step-4 checkpoint is written: that step is saved once (not twice,
    which used to fail the run), the run hands over to the requeue handler, and the rerun ends as if never
    interrupted."""
    from petsweep.records.status import QUEUED

    extra = ("trainer.max_steps=12", "trainer.eval_every=4", "trainer.save_every=4", "method.dropout=0.1")
    reference = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/reference"))
    run(reference)

    def requeue(signum, frame):  # what submitit's handler does: requeue the job, exit the process
        raise SystemExit(0)

    real_save, saves = checkpoint.save, []

    def save_while_signalled(*args, **kwargs):
        saves.append(args[1])
        if len(saves) == 1:
            os.kill(os.getpid(), signal.SIGUSR2)  # lands in the middle of writing the step-4 checkpoint
        return real_save(*args, **kwargs)

    previous = signal.signal(signal.SIGUSR2, requeue)
    monkeypatch.setattr(checkpoint, "save", save_while_signalled)
    preempted = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/preempted"))
    try:
        with pytest.raises(SystemExit):
            run(preempted)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    record = RunDir(run_dir(preempted))
    assert saves == [4, 4] and record.state() == QUEUED  # asked twice, written once: requeued, not FAILED
    assert [p.name for p in record.checkpoints.glob("step-*")] == ["step-00000004"]
    monkeypatch.setattr(checkpoint, "save", real_save)
    run(preempted)
    _assert_same_run(RunDir(run_dir(reference)), record)


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tiny, tmp_path, monkeypatch, caplog):
    extra = ("trainer.max_steps=12", "trainer.eval_every=4", "trainer.save_every=4", "method.dropout=0.1")
    reference = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/reference"))
    run(reference)
    crashing = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/crashing"))
    crash_after_second_save(crashing, monkeypatch)
    record = RunDir(run_dir(crashing))
    assert sorted(p.name for p in record.checkpoints.glob("step-*")) == ["step-00000004", "step-00000008"]
    newest = record.checkpoints / "step-00000008" / "optimizer.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a file cut short by a crash
    run(crashing)
    assert "step-00000008 is corrupt" in caplog.text
    assert "resumed from step-00000004" in (record.path / "train.log").read_text()
    _assert_same_run(RunDir(run_dir(reference)), record)


def test_a_death_in_the_final_evaluation_leaves_no_duplicate_metric_rows(tiny, tmp_path, monkeypatch):
    """No checkpoint at all (save_every beyond max_steps): the rerun starts over and must not append to the
    rows the first attempt logged."""
    from petsweep.train import loop as training

    extra = ("trainer.max_steps=4", "trainer.eval_every=2", "trainer.save_every=100")
    cfg = compose(tiny("encoder", *extra))
    real_evaluate, calls = training.evaluate, []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # dev at 2, dev at 4, then the final test evaluation
            raise KeyboardInterrupt("died in the final evaluation")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    monkeypatch.setattr(training, "evaluate", real_evaluate)
    run(cfg)
    rows = [json.loads(x)["step"] for x in RunDir(run_dir(cfg)).metrics_file.read_text().splitlines()]
    assert rows == [2, 4]
