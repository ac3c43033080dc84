"""Runs of several ranks on CPU gloo, as real processes: data parallel parity with one rank, ZeRO-3 shards,
resume after the run's process dies without a word, and what a run of several ranks refuses up front."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_cli, tiny_run
from safetensors.torch import load_file

from petsweep.records.status import RunDir
from petsweep.spec.errors import EXIT_CANCELLED, EXIT_FAILED

NO_DROPOUT = "tiny-bert-nodrop"  # dropout draws per rank: parity with one rank needs a model without it


@pytest.fixture(scope="module")
def ranks_conf(tiny_conf, tmp_path_factory):
    """The tiny BERT with its dropout off, as a backbone of its own."""
    import yaml

    root = tmp_path_factory.mktemp("ranks")
    source = yaml.safe_load((tiny_conf / "backbone" / "tiny-bert.yaml").read_text())
    model = root / "models" / NO_DROPOUT
    shutil.copytree(source["path"], model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))
    (root / "conf" / "backbone").mkdir(parents=True)
    # dropout 0 in the config too: the identity counts ranks only for runs that draw dropout masks
    body = {**source, "name": NO_DROPOUT, "path": str(model), "dropout": 0.0}
    (root / "conf" / "backbone" / f"{NO_DROPOUT}.yaml").write_text(yaml.safe_dump(body))
    return root / "conf"


def args(conf, root, *extra):
    return ["run.py", *tiny_run(conf, NO_DROPOUT, root, "method.dropout=0.0", *extra)]


def finished(root) -> tuple[RunDir, dict]:
    [path] = root.glob("*/*/result.json")
    return RunDir(path.parent), json.loads(path.read_text())


def assert_same_numbers(a: RunDir, b: RunDir, atol=1e-5):
    wa, wb = (load_file(r.path / "pet_weights.safetensors") for r in (a, b))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=atol), name
    ra, rb = a.result(), b.result()
    assert ra["metrics"] == pytest.approx(rb["metrics"], abs=1e-6)
    assert ra["best_step"] == rb["best_step"] and ra["steps"] == rb["steps"]
    la, lb = ([json.loads(x) for x in r.metrics_file.read_text().splitlines()] for r in (a, b))
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    assert [r["train_loss"] for r in la] == pytest.approx([r["train_loss"] for r in lb], rel=1e-5)


def test_two_ranks_end_where_one_rank_ends(ranks_conf, tmp_path):
    one = run_cli(*args(ranks_conf, tmp_path / "one"))
    two = run_cli(*args(ranks_conf, tmp_path / "two", "trainer.ranks=2"))
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    (run1, r1), (run2, r2) = finished(tmp_path / "one"), finished(tmp_path / "two")
    assert run1.path.name == run2.path.name  # the number of ranks is not part of the identity
    assert (r1["ranks"], r2["ranks"]) == (1, 2) and r1["tokens"] == r2["tokens"]
    assert_same_numbers(run1, run2)
    # rank 0 alone wrote the records: one summary, one train.log line per evaluation
    assert two.stdout.count("petsweep: ") == 1
    assert (run2.path / "train.log").read_text().count("step 3 ") == 1
    assert {p.name for p in (run2.checkpoints / "step-00000003").iterdir()} >= {
        "rng.safetensors",
        "rng-rank1.safetensors",
    }


def test_zero3_on_two_ranks_holds_half_each_and_loads_into_shards(ranks_conf, tmp_path):
    extra = ("trainer.ranks=2", "deepspeed=zero3", "deepspeed.param_persistence_threshold=0")
    out = run_cli(*args(ranks_conf, tmp_path / "zero3", *extra))
    assert out.returncode == 0, out.stderr[-3000:]
    run, result = finished(tmp_path / "zero3")
    shards = result["shards"]
    assert result["deepspeed"] == "zero3" and result["ranks"] == 2 and shards["loaded_into_shards"]
    for key, total in (("params", result["total_params"]), ("optimizer", result["trainable_params"])):
        assert len(shards[key]) == 2 and sum(shards[key]) >= total, (key, shards)
        assert all(0.45 * total <= held <= 0.55 * total + 64 for held in shards[key]), (key, shards)
    engine = run.checkpoints / "step-00000003" / "engine"
    assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= {
        p.name for p in engine.iterdir()
    }
    plain = run_cli(*args(ranks_conf, tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert_same_numbers(finished(tmp_path / "plain")[0], run, atol=1e-4)


def _wait(predicate, timeout=180, what="condition"):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.parametrize("zero", ["deepspeed=none", "deepspeed=zero3"])
def test_a_killed_two_rank_run_resumes_with_parity(ranks_conf, tmp_path, zero):
    """kill -9 of the process that started the ranks: they die with it; a rerun resumes both from the last
    checkpoint (under ZeRO-3, each rank from its own shards) and ends where an uninterrupted two-rank run
    ends."""
    long = ("trainer.ranks=2", "trainer.max_steps=40", "trainer.save_every=5", "trainer.eval_every=20", zero)
    proc = subprocess.Popen(
        [sys.executable, *args(ranks_conf, tmp_path / "killed", *long)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    checkpoints = tmp_path / "killed"
    _wait(lambda: list(checkpoints.glob("*/*/checkpoints/step-*")), what="a checkpoint")
    children = _ranks_of(proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    [run_path] = checkpoints.glob("*/[!.]*")
    _wait(lambda: not any(_alive(pid) for pid in children), timeout=30, what="the ranks to die with it")
    assert RunDir(run_path).state() == "RUNNING" and not (run_path / "result.json").exists()

    again = run_cli(*args(ranks_conf, tmp_path / "killed", *long))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in (run_path / "train.log").read_text()
    reference = run_cli(*args(ranks_conf, tmp_path / "whole", *long))
    assert reference.returncode == 0, reference.stderr[-2000:]
    assert_same_numbers(finished(tmp_path / "whole")[0], RunDir(run_path), atol=0)


def _ranks_of(proc) -> list[int]:
    """The rank processes a run's process started, rank 0 first."""
    found = subprocess.run(
        ["pgrep", "-P", str(proc.pid), "-f", "petsweep.run.worker --rank"], capture_output=True, text=True
    )
    children = sorted(int(pid) for pid in found.stdout.split())
    assert len(children) == 2, found
    return children


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie is dead


# sitecustomize for a run's rank processes: in its exit, once rank 0 has recorded the run COMPLETED, rank
# ABORT_RANK aborts (as a rank did in gloo's teardown), rank HANG_RANK never ends, the others take SLOW_S more
ABORT_AFTER_THE_END = """
import atexit, glob, json, os, time

def _completed():
    for path in glob.glob(os.environ["ABORT_UNDER"] + "/*/*/status.json"):
        try:
            if json.load(open(path)).get("state") == "COMPLETED":
                return True
        except ValueError:
            pass
    return False

def _at_exit():
    deadline = time.monotonic() + 120
    while not _completed() and time.monotonic() < deadline:
        time.sleep(0.05)
    if os.environ["RANK"] == os.environ["ABORT_RANK"]:
        os.abort()
    time.sleep(3600 if os.environ["RANK"] == os.environ["HANG_RANK"] else float(os.environ["SLOW_S"]))

if "RANK" in os.environ:
    atexit.register(_at_exit)
"""


@pytest.mark.parametrize(
    "abort_rank,hang_rank,slow_s,said",
    [
        ("1", "", 8, "rank 1 of 2 killed by signal 6 (SIGABRT)"),
        ("0", "", 0, "rank 0 of 2 killed by signal 6 (SIGABRT)"),
        ("", "1", 0, "rank 1 of 2 did not end within 5 s of the others and was stopped"),
    ],
    ids=["rank 1, rank 0 slower than the grace", "rank 0 itself", "rank 1 hangs"],
)
def test_a_rank_that_dies_after_the_run_ended_loses_nothing(
    ranks_conf, tmp_path, abort_rank, hang_rank, slow_s, said
):
    """A rank that dies in its exit, after rank 0 recorded the run's end (CI saw rank 1 of a ZeRO-3 resume
    abort there now and then, and the finished run was recorded FAILED), whichever rank it is and however long
    rank 0 then takes to end, or that never ends: the run stays COMPLETED with its result, the command exits
    0, and one warning line says what happened."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(ABORT_AFTER_THE_END)
    runs = tmp_path / "runs"
    faults = {"ABORT_RANK": abort_rank, "HANG_RANK": hang_rank, "SLOW_S": str(slow_s)}
    env = {"PYTHONPATH": str(hook), "ABORT_UNDER": str(runs), **faults}
    out = run_cli(*args(ranks_conf, runs, "trainer.ranks=2"), env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"warning: {said} after the run ended" in out.stderr
    run, result = finished(runs)
    assert run.state() == "COMPLETED" and result["ranks"] == 2
    assert run.result() == result


@pytest.mark.parametrize(
    "stop",
    [
        "kill -9 of rank 1",
        "SIGTERM to the command",
        "SIGTERM to rank 0",
        "SIGTERM to rank 0, then to the command",
    ],
)
def test_a_rank_that_dies_fails_the_run_in_one_line(ranks_conf, tmp_path, stop):
    """A rank killed mid-run (OOM killer, segfault): the others are stopped, the run is FAILED naming the
    rank and signal, the command exits 1 as a failed one-rank run does, and nothing is recorded as finished.
    A cancel (SIGTERM to the command: every rank gets it; or to rank 0 alone, as `petsweep cancel` sends it:
    the others lose their peer) records CANCELLED and exits 143 with one line and no rank's traceback, as one
    rank does."""
    long = ("trainer.ranks=2", "trainer.max_steps=400", "trainer.save_every=5", "trainer.eval_every=200")
    proc = subprocess.Popen(
        [sys.executable, *args(ranks_conf, tmp_path, *long)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait(lambda: list(tmp_path.glob("*/*/checkpoints/step-*")), what="a checkpoint")
    children = _ranks_of(proc)
    killed = stop.startswith("kill")
    target = {"kill -9 of rank 1": children[1], "SIGTERM to the command": proc.pid}.get(stop, children[0])
    os.kill(target, signal.SIGKILL if killed else signal.SIGTERM)
    if stop.endswith("then to the command"):  # a sweep's Ctrl-C after `petsweep cancel` (review -113)
        _wait(lambda: not _alive(children[0]), what="rank 0 to end")
        os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    [run_path] = tmp_path.glob("*/[!.]*")
    status = RunDir(run_path).status()
    said = [line for line in stderr.splitlines() if line.startswith(("error:", "cancelled"))]
    if killed:
        assert proc.returncode == EXIT_FAILED and status["state"] == "FAILED", stderr[-3000:]
        assert "rank 1 of 2 killed by signal 9 (SIGKILL)" in status["error"]
        assert said == [f"error: run {run_path} FAILED: rank 1 of 2 killed by signal 9 (SIGKILL)"]
    else:
        assert proc.returncode == EXIT_CANCELLED and status["state"] == "CANCELLED", stderr[-3000:]
        again = "run the same command again to resume it"
        assert said == [f"cancelled (stopped by SIGTERM): the run recorded CANCELLED; {again}"]
        assert "Traceback" not in stderr, stderr[-3000:]
    assert not (run_path / "result.json").exists()


# sitecustomize for a run's rank processes, each fault in the rank its variable names: RAISE_RANK raises at
# its 6th optimizer step (with EXIT_WITH set, exits with that status instead), first having the command sent
# SIGTERM CANCEL_AFTER_S later where that is set; ABORT_RANK aborts in its exit (as gloo's teardown did);
# CLAIM_RAISE_RANK raises in the claim's broadcast; BUSY_CANCEL_RANK0: rank 0, at its 6th step, gets SIGTERM
# (`petsweep cancel`) while busy for 3 s (the signal held back until then)
FAULTS_IN_RANKS = """
import atexit, os

RANK = os.environ.get("RANK")

if RANK is not None:
    import signal, threading, time
    import torch.distributed as dist
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    class InjectedFault(RuntimeError):
        def __init__(self, *args):
            super().__init__(f"rank {RANK} broke on purpose")

    steps = []

    def _step(optimizer, args, kwargs):
        steps.append(1)
        if len(steps) == 6 and RANK == "0" and os.environ.get("BUSY_CANCEL_RANK0"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(3)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        if len(steps) == 6 and RANK == os.environ.get("RAISE_RANK"):
            if os.environ.get("CANCEL_AFTER_S"):
                delay = float(os.environ["CANCEL_AFTER_S"])
                threading.Timer(delay, os.kill, (os.getppid(), signal.SIGTERM)).start()
            if os.environ.get("EXIT_WITH"):
                raise SystemExit(int(os.environ["EXIT_WITH"]))
            raise InjectedFault()

    register_optimizer_step_pre_hook(_step)

    if RANK == os.environ.get("ABORT_RANK"):
        atexit.register(os.abort)

    if RANK == os.environ.get("CLAIM_RAISE_RANK"):
        def _claim_fails(*args, **kwargs):
            raise InjectedFault()

        dist.broadcast_object_list = _claim_fails
"""
ALSO_RANK_0 = "what rank 0 recorded then:"


@pytest.mark.parametrize(
    "faults,said,also_rank_0",
    [
        ({"RAISE_RANK": "1"}, "rank 1 of 2 failed: InjectedFault: rank 1 broke on purpose", True),
        (
            {"RAISE_RANK": "1", "EXIT_WITH": "3", "CANCEL_AFTER_S": "0.3"},
            "rank 1 of 2 failed: SystemExit: 3",
            True,
        ),
        ({"RAISE_RANK": "0", "ABORT_RANK": "1"}, "InjectedFault: rank 0 broke on purpose", False),
        (
            {"RAISE_RANK": "1", "BUSY_CANCEL_RANK0": "1"},
            "rank 1 of 2 failed: InjectedFault: rank 1 broke on purpose",
            True,
        ),
        ({"CLAIM_RAISE_RANK": "1"}, "rank 1 of 2 failed: InjectedFault: rank 1 broke on purpose", False),
    ],
    ids=[
        "rank 1 raises",
        "rank 1 exits 3, a cancel just after",
        "rank 0 raises, rank 1 aborts in its exit",
        "rank 1 raises, then petsweep cancel of rank 0",
        "rank 1 fails in the claim",
    ],
)
def test_the_rank_that_failed_first_is_named_on_the_record(ranks_conf, tmp_path, faults, said, also_rank_0):
    """A rank raises (or exits non-zero) mid-run: the others fail on losing it, rank 0 recording that loss
    ("Connection reset by peer"); the record names the rank that failed first and what it raised, error.txt
    starts with its traceback (then what rank 0 had written), the command exits 1 with that one line.
    Neither a rank that then dies in its teardown nor a cancel after the failure (of the command, or of rank
    0 alone) makes it another rank's failure or a cancel; a rank failing in the claim is named too (reviews
    -112 to -114)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAULTS_IN_RANKS)
    runs = tmp_path / "runs"
    long = ("trainer.ranks=2", "trainer.max_steps=400", "trainer.eval_every=200")
    out = run_cli(*args(ranks_conf, runs, *long), env={"PYTHONPATH": str(hook), **faults}, timeout=300)
    [run_path] = runs.glob("*/[!.]*")
    status = RunDir(run_path).status()
    assert out.returncode == EXIT_FAILED and status["state"] == "FAILED", out.stderr[-3000:]
    assert status["error"] == said
    told = (run_path / "error.txt").read_text()
    assert told.startswith("Traceback") and told.split(ALSO_RANK_0)[0].rstrip().endswith(
        said.split(": ", 1)[-1]
    )
    assert (ALSO_RANK_0 in told) == also_rank_0
    errors = [line for line in out.stderr.splitlines() if line.startswith(("error:", "cancelled"))]
    assert errors == [f"error: run {run_path} FAILED: {said}"], out.stderr[-3000:]
    assert not (run_path / "result.json").exists()


def test_zero3_offload_completes_on_cpu(tiny):
    from petsweep.compose import compose
    from petsweep.run.app import run

    result = run(compose(tiny("encoder", "deepspeed=zero3_offload")))
    assert result["deepspeed"] == "zero3_offload" and result["status"] == "COMPLETED"
    assert result["shards"]["optimizer"] == [result["trainable_params"]]


@pytest.mark.parametrize(
    ("extra", "key", "says"),
    [
        (("trainer.ranks=3",), "trainer.batch_size", "divide evenly among the run's 3 ranks"),
        (("trainer.ranks=0",), "trainer.ranks", "must be null"),
    ],
)
def test_ranks_that_cannot_carry_the_run_are_refused(ranks_conf, tmp_path, extra, key, says):
    out = run_cli(*args(ranks_conf, tmp_path, *extra))
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1 and key in errors[0] and says in errors[0], out.stderr
    assert not list(tmp_path.rglob("status.json"))


def test_offload_without_the_host_memory_is_refused_before_loading(tiny, tmp_path, monkeypatch):
    from petsweep.compose import compose
    from petsweep.run.app import run
    from petsweep.spec.errors import ConfigError
    from petsweep.train import distributed

    monkeypatch.setattr(distributed, "host_memory_available", lambda: 1 << 20)  # 1 MiB free
    with pytest.raises(ConfigError, match=r"deepspeed.preset.*needs about .* GiB of host memory"):
        run(compose(tiny("encoder", "deepspeed=zero3_offload")))
    assert not list(tmp_path.rglob("status.json"))  # refused before anything was claimed


def test_zero3_without_torch_distributed_is_refused(tiny, monkeypatch):
    from petsweep.compose import compose
    from petsweep.run.app import run
    from petsweep.spec.errors import ConfigError

    monkeypatch.setattr(torch.distributed, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs torch.distributed"):
        run(compose(tiny("encoder", "deepspeed=zero3")))


@pytest.mark.parametrize("family", ["encoder", "encoder_decoder", "decoder"])
def test_bf16_runs_hold_the_frozen_backbone_in_bf16_and_train_in_fp32(tiny, monkeypatch, family):
    """trainer.precision=bf16 (on CPU here; `auto` picks it on GPUs that have it): the frozen weights sit in
    bf16, what the method trains stays fp32, and the record says which."""
    from petsweep.compose import compose
    from petsweep.run.app import run
    from petsweep.train import loop as train_module

    seen = {}
    real = train_module.make_stepper

    def spy(model, *args, **kwargs):
        seen.update({n: (p.dtype, p.requires_grad) for n, p in model.named_parameters()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "make_stepper", spy)
    result = run(compose(tiny(family, "trainer.precision=bf16")))
    assert result["precision"] == "bf16" and result["backbone_dtype"] == "bfloat16"
    frozen = {dtype for dtype, trained in seen.values() if not trained}
    trained = {dtype for dtype, trained in seen.values() if trained}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}
    assert result["score"] >= 0 and result["steps"] == 6


def test_a_local_sweep_of_two_rank_runs(ranks_conf, tmp_path):
    """The local launcher's pool starts each run's process, which starts its two ranks; both runs finish
    with the records of a run, and the sweep's summary counts them."""
    run_py, *overrides = args(ranks_conf, tmp_path, "trainer.ranks=2", "sweep_name=pair", "seed=1,2")
    out = run_cli(run_py, "-m", *overrides)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "pair").glob("*/result.json")]
    assert sorted(r["seed"] for r in results) == [1, 2] and {r["ranks"] for r in results} == {2}
    assert "2 runs (2 done)" in out.stdout
