"""Sweeps through `python run.py -m` on tiny backbones: resume, dedupe, failure isolation, status, cancel."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_NAMES, run_cli, sweep_argv

from launchers.report import status_table
from petsweep.records.status import RunDir, State, write_json


def sweep(tiny_conf, root, *axes, name="study"):
    return run_cli(*sweep_argv(tiny_conf, root, *axes, parallel=2, name=name))


def states(root) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["state"] for p in sorted(root.glob("*/status.json"))}


def test_rerun_is_a_resume_and_duplicates_run_once(tiny_conf, tmp_path):
    first = sweep(tiny_conf, tmp_path, f"backbone={TINY_NAMES['encoder']}", "method=lora,bitfit", "seed=1,1")
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    assert "2 runs (2 new); 2 duplicate configs merged; launching 2" in first.stdout
    results = {p: p.stat().st_mtime_ns for p in (tmp_path / "study").glob("*/result.json")}
    assert len(results) == 2

    again = sweep(tiny_conf, tmp_path, f"backbone={TINY_NAMES['encoder']}", "method=lora,bitfit", "seed=1,2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 runs (2 done, 2 new); launching 2" in again.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in results.items())  # finished runs were not touched
    assert set(states(tmp_path / "study").values()) == {"COMPLETED"}


def test_failures_are_isolated_listed_and_retried_alone(tiny_conf, tmp_path):
    # lr 1e30 turns the loss into NaN on tiny-bert; the rest must finish regardless
    axes = ["backbone=tiny-bert,tiny-gpt2", "method=lora,bitfit", "method.lr=0.002,1e30"]
    out = sweep(tiny_conf, tmp_path, *axes)
    assert out.returncode == 1
    by_state = states(tmp_path / "study")
    failed = sorted(n for n, s in by_state.items() if s == "FAILED")
    lr = {
        n: yaml.safe_load((tmp_path / "study" / n / "config.yaml").read_text())["method"]["lr"]
        for n in by_state
    }
    assert len(by_state) == 8 and all(lr[n] == 1e30 for n in failed)  # only the diverging runs failed
    assert {n for n in by_state if "tiny-bert" in n and lr[n] == 1e30} <= set(failed)
    table = status_table(tmp_path / "study")
    for name in failed:
        assert f"traceback: {tmp_path / 'study' / name / 'error.txt'}" in table
    assert "FloatingPointError: loss is nan" in table or "loss is inf" in table

    again = sweep(tiny_conf, tmp_path, *axes)
    done = 8 - len(failed)
    assert f"8 runs ({done} done, {len(failed)} failed); launching {len(failed)}" in again.stdout


def test_a_pair_the_backbone_cannot_take_stops_the_sweep_before_anything_runs(tiny_conf, tmp_path):
    """BitFit on bias-free T5, found on the meta device when the sweep is planned: one line, no run dir."""
    out = sweep(tiny_conf, tmp_path, "backbone=tiny-bert,tiny-t5", "method=bitfit")
    assert out.returncode == 2 and "no bias parameters" in out.stderr and "backbone=tiny-t5" in out.stderr
    assert not list(tmp_path.rglob("status.json"))


def _write_records(index: int, root: str) -> None:
    run = RunDir(f"{root}/run-{index:02d}")
    run.set_status("RUNNING")
    write_json(run.result_file, {"index": index, "payload": ["x" * 100] * 2000})
    run.set_status("COMPLETED")


def test_64_processes_write_records_into_one_sweep_dir(tmp_path):
    with multiprocessing.get_context("fork").Pool(16) as pool:
        pending = pool.starmap_async(_write_records, [(i, str(tmp_path)) for i in range(64)])
        while not pending.ready():  # read while they write: never a partial record
            for path in tmp_path.glob("*/result.json"):
                assert json.loads(path.read_text())["payload"][-1] == "x" * 100
        pending.get()
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/result.json"))]
    assert [r["index"] for r in records] == list(range(64))
    assert set(states(tmp_path).values()) == {"COMPLETED"}
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_cancel_stops_the_sweep_then_rerun_finishes(tiny_conf, tmp_path):
    """Two runs running, two waiting in the pool: cancel stops the two, and the pool starts neither other."""
    axes = [
        "backbone=tiny-bert",
        "seed=1,2,3,4",
        # long enough to stop at its step-50 checkpoint: both runs must still run when the later of the two
        # workers (which start together) has saved one, so this one keeps the margin of 250 steps
        "trainer.max_steps=300",
        "trainer.save_every=50",
        "trainer.eval_every=1000",
        "task.k_shot=40",
    ]
    proc = subprocess.Popen(
        [sys.executable, *sweep_argv(tiny_conf, tmp_path, *axes, parallel=2)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 180
    while (
        list(states(tmp_path / "study").values()).count("RUNNING") < 2
        or len(list((tmp_path / "study").glob("*/checkpoints/step-*"))) < 2
    ):
        assert time.time() < deadline and proc.poll() is None, "runs did not start"
        time.sleep(0.2)
    out = run_cli("-m", "petsweep.cli", "cancel", str(tmp_path / "study"))
    assert "cancelled 2 running run(s)" in out.stdout
    proc.wait(timeout=60)
    assert list(states(tmp_path / "study").values()) == ["CANCELLED"] * 2  # the other two never started
    assert "cancelled" in status_table(tmp_path / "study")

    again = sweep(tiny_conf, tmp_path, *axes)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "4 runs (2 cancelled, 2 new); launching 4" in again.stdout
    assert set(states(tmp_path / "study").values()) == {"COMPLETED"}


def test_status_and_cancel_reject_a_non_sweep_dir(tmp_path):
    for command in ("status", "cancel"):
        out = run_cli("-m", "petsweep.cli", command, str(tmp_path))
        assert out.returncode == 2 and "is not a petsweep sweep directory" in out.stderr


def test_zip_axes_of_different_lengths_fail_before_launching(tiny_conf, tmp_path):
    out = sweep(
        tiny_conf,
        tmp_path,
        "backbone=tiny-bert",
        "method=lora,full",
        "seed=1,2,3",
        "hydra.sweeper.zip=[[method,seed]]",
    )
    assert out.returncode == 2 and "zipped axes need equal lengths" in out.stderr
    assert not list(tmp_path.rglob("status.json"))


def test_a_run_whose_node_went_silent_is_relaunched_and_a_live_one_is_not(tiny_conf, tmp_path):
    """RUNNING written on another host: trusted while it beats, interrupted (and relaunched) once it stops."""
    from launchers.planning import run_status
    from petsweep.records.status import STALE_AFTER_S

    axes = ["backbone=tiny-bert", "seed=1,2"]
    first = sweep(tiny_conf, tmp_path, *axes)
    assert first.returncode == 0, first.stdout[-2000:]
    silent, beating = sorted((tmp_path / "study").glob("*/status.json"))
    for status_file, last_beat in ((silent, time.time() - 2 * STALE_AFTER_S), (beating, time.time())):
        run = RunDir(status_file.parent)
        run.result_file.unlink()
        write_json(
            status_file, {"state": "RUNNING", "host": "node-that-died", "pid": 1, "updated": last_beat}
        )
        run.heartbeat_file.write_text(f"{last_beat}")
    assert run_status(silent.parent) == State.INTERRUPTED and run_status(beating.parent) == State.RUNNING
    again = sweep(tiny_conf, tmp_path, *axes)
    assert "2 runs (1 interrupted, 1 running); launching 1" in again.stdout, again.stdout[-2000:]
    assert states(tmp_path / "study") == {silent.parent.name: "COMPLETED", beating.parent.name: "RUNNING"}


def _claim(path: str, barrier) -> bool:
    barrier.wait()
    token = RunDir(path).claim("RUNNING")
    barrier.wait()  # stay alive until every process has tried: a claim by a dead process is not live
    return token is not None


def test_two_launches_at_once_claim_a_run_once(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier = context.Manager().Barrier(8)
    with context.Pool(8) as pool:
        won = pool.starmap(_claim, [(str(tmp_path / "run"), barrier)] * 8)
    assert sum(won) == 1


def test_gpu_pool_hands_out_whole_sets_and_makes_big_runs_wait():
    """A run of 2 GPUs on a 3-GPU machine gets 2 disjoint GPUs; the next run of 2 waits until they are given
    back (no part of a set is ever held); a run asking for more than the machine has gets all of them."""
    import threading

    from launchers.local import GpuPool

    pool = GpuPool(3)
    first = pool.take(2)
    single = pool.take(1)
    assert sorted(first + single) == [0, 1, 2]
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.take(2)))
    waiter.start()
    waiter.join(timeout=0.3)
    assert waiter.is_alive() and not got and pool.free == []  # waits: one free GPU is not two
    pool.give(single)
    waiter.join(timeout=0.3)
    assert waiter.is_alive() and pool.free == [single[0]]  # still waits, holding nothing
    pool.give(first)
    waiter.join(timeout=5)
    assert len(got) == 1 and len(set(got[0])) == 2
    pool.give(got[0])
    assert pool.take(8) == [0, 1, 2]


def _sweep_in_background(tiny_conf, tmp_path, *axes, sigint_ignored: bool = True) -> subprocess.Popen:
    """A sweep in its own process group (no signal of the test's reaches its processes), by default started
    as `run.py -m ... &` in a script starts it: SIGINT ignored (the sweep went on launching runs)."""
    ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen(
        [sys.executable, *sweep_argv(tiny_conf, tmp_path, *axes)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=ignore_sigint,
    )


def test_ctrl_c_cancels_like_petsweep_cancel_and_a_rerun_finishes(tiny_conf, tmp_path):
    """Ctrl-C (SIGINT to the sweep's process group, as a terminal sends it) stops the running run CANCELLED
    with one line and no traceback, as SIGTERM does; it was FAILED with an empty KeyboardInterrupt and ~50
    lines of traceback. The sweep starts no queued run and exits 130. The same command then resumes and
    finishes."""
    # stopped at its step-20 checkpoint with 100 steps to go (300 steps only made the rerun long)
    axes = ["backbone=tiny-bert", "seed=1,2", "trainer.max_steps=120", "trainer.save_every=20"]
    axes += ["trainer.eval_every=1000", "task.k_shot=40"]
    proc = _sweep_in_background(tiny_conf, tmp_path, *axes)
    deadline = time.time() + 180
    while not list((tmp_path / "study").glob("*/checkpoints/step-*")):
        assert time.time() < deadline and proc.poll() is None, "the run did not start"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    # the sweep stops: exit 130, one line, the queued run never starts (it started; the sweep exited 1)
    assert proc.returncode == 130, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "interrupted (Ctrl-C)" in out, out[-3000:]
    assert list(states(tmp_path / "study").values()) == ["CANCELLED"], states(tmp_path / "study")
    again = sweep(tiny_conf, tmp_path, *axes)
    assert again.returncode == 0, again.stdout[-3000:]
    assert set(states(tmp_path / "study").values()) == {"COMPLETED"}


def test_ctrl_c_before_any_run_starts_stops_the_sweep(tiny_conf, tmp_path):
    """#22 review: a sweep started with SIGINT ignored (`run.py -m ... &` in a script) took Ctrl-C only once
    its pool ran: one sent while it planned was lost and both runs trained to the end (exit 0)."""
    axes = ["backbone=tiny-bert", "seed=1,2", "trainer.max_steps=1500", "trainer.eval_every=1000"]
    proc = _sweep_in_background(tiny_conf, tmp_path, *axes)
    time.sleep(1.5)  # importing (torch) and planning: no run has started
    assert proc.poll() is None and not list((tmp_path / "study").glob("*/status.json"))
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted (Ctrl-C)" in out, out[-3000:]
    assert "COMPLETED" not in states(tmp_path / "study").values()


def _children(pid: int) -> set[int]:
    """The processes `pid` started (each of its threads' children): its runs' workers or processes."""
    found = set()
    for task in (Path("/proc") / str(pid) / "task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(
    "launcher, running",
    [(["hydra.launcher.max_parallel=2"], 2), (["hydra.launcher.warm_workers=false"], 1)],
    ids=["warm-workers-2-running", "fresh-processes"],
)
def test_sigterm_to_the_sweep_alone_cancels_its_running_runs(tiny_conf, tmp_path, launcher, running):
    """R23 review F5: SIGTERM to the sweep's pid alone (`kill`, `timeout`, a scheduler; no signal reaches its
    children) waited for every running run to finish (minutes), then said "the run recorded CANCELLED" of a
    COMPLETED run. The sweep hands the signal on: each running run records CANCELLED, no queued one starts,
    the sweep exits 143 within seconds with a line that counts what they came to, and leaves no process."""
    axes = ["backbone=tiny-bert", "seed=1,2,3", "trainer.max_steps=3000", "trainer.save_every=50"]
    axes += ["trainer.eval_every=5000", "task.k_shot=40", *launcher]
    proc = _sweep_in_background(tiny_conf, tmp_path, *axes, sigint_ignored=False)  # only this kill reaches it
    deadline = time.time() + 180
    while len(list((tmp_path / "study").glob("*/checkpoints/step-*"))) < running:
        assert time.time() < deadline and proc.poll() is None, "the runs did not start"
        time.sleep(0.2)
    children = _children(proc.pid)
    assert len(children) >= running, children
    os.kill(proc.pid, signal.SIGTERM)
    stopped_at = time.time()
    out, _ = proc.communicate(timeout=120)
    took = time.time() - stopped_at
    assert proc.returncode == 143, out[-3000:]
    assert list(states(tmp_path / "study").values()) == ["CANCELLED"] * running, states(tmp_path / "study")
    assert "Traceback" not in out, out[-3000:]
    counted = f"of 3 run(s) to run, {running} recorded CANCELLED, {3 - running} not started"
    assert f"cancelled (SIGTERM): {counted}; run the same command again" in out, out[-3000:]
    # a run of 3,000 steps stops at once: not after training to its end (stopped_at is after 50 steps)
    assert not list((tmp_path / "study").glob("*/result.json")), took
    assert not [pid for pid in children if _alive(pid)], (children, out[-3000:])


def test_a_sweep_lives_in_one_dir_its_runs_and_its_launcher_logs(tiny_conf, tmp_path):
    """R23 review F9: run dirs went to <runs_root>/<sanitised sweep_name>, the launcher's logs to Hydra's raw
    hydra.sweep.dir: `sweep_name=a/../../b` put them outside the runs root. One rule (identity.sweep_dir)
    for both; a name of dots alone is a folder below the runs root too."""
    from petsweep.spec.identity import sweep_dir

    root = tmp_path / "root"
    out = sweep(tiny_conf, root, "backbone=tiny-bert", "seed=1,2", name="a/../../b")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    study = root / "a_.._.._b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # nothing outside the runs root
    assert sorted(p.name for p in root.iterdir()) == ["a_.._.._b"]
    assert set(states(study).values()) == {"COMPLETED"} and len(states(study)) == 2
    logs = list(study.glob(".launcher/*/*/*.log"))
    assert {log.stem for log in logs} == set(states(study)), logs
    # "" and "." are the runs root itself, as they were before the rule (old sweeps there keep their runs:
    # review of 2026-12-06, G5); ".." is refused in validation and never reaches above the root
    for name, folder in [("..", "__"), (".", ""), ("", ""), ("x/..", "x_..")]:
        assert sweep_dir({"paths": {"runs_root": "/r"}, "sweep_name": name}) == Path("/r") / folder


def test_a_run_another_sweep_is_training_reads_running_elsewhere_not_failed(tmp_path):
    """Two sweeps racing for one run: the one refused by the claim said `FAILED: ... already RUNNING`."""
    from omegaconf import OmegaConf

    from launchers.progress import outcome
    from petsweep.run.app import claim_run

    run = RunDir(tmp_path / "study" / "a-run")
    other = subprocess.Popen(["sleep", "60"])  # the other sweep's live process trains it
    try:
        run.set_status("RUNNING", pid=other.pid)
        run.beat()
        refusal = claim_run(run, OmegaConf.create({}), None)
        log = tmp_path / "launcher.log"
        log.write_text(f"error: {refusal}\n")
        line = outcome(run.path, 2, log)
    finally:
        other.kill()
    where = f"process {other.pid} on {socket.gethostname()}"
    assert line == f"RUNNING elsewhere ({where}): left to it"
    # the other sweep finished it before this one read its outcome: it said `COMPLETED: ... already RUNNING`
    (run.path / "result.json").write_text(json.dumps({"metric": "accuracy", "score": 0.5}))
    run.set_status("COMPLETED")
    assert outcome(run.path, 2, log) == f"COMPLETED elsewhere ({where}): accuracy 0.5000"
    # a run whose worker Ctrl-C stopped before it claimed it read `FAILED: exit -2`
    never = outcome(tmp_path / "study" / "never-started", -2, None)
    assert never.startswith("NOT STARTED: its worker was killed by signal 2 (SIGINT) first"), never
    # a fused member without a line of its own never shows another member's (the group's log is shared)
    shared = tmp_path / "group.log"
    shared.write_text(f"error: run {tmp_path}/study/other-run FAILED: FloatingPointError: loss is nan\n")
    mine = RunDir(tmp_path / "study" / "my-run")
    mine.set_status("FAILED")
    assert "FloatingPointError" not in outcome(mine.path, 1, shared)
    # a fused group's member the group never claimed (stopped while claiming the others)
    assert outcome(tmp_path / "study" / "never-started", 143, None).startswith("NOT STARTED: the sweep was")
