"""Fused training: runs trained together on one frozen backbone end where each ends alone (the contract); a
member that diverges fails alone; an interrupted group resumes each member; the planner says what fuses."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import QUICK, REPO, run_cli, sweep_argv
from safetensors.torch import load_file

from analysis.load import run_row
from petsweep.compose import compose
from petsweep.model.resolve import run_dir
from petsweep.records.status import RunDir
from petsweep.run.app import run
from petsweep.run.group import run_group
from petsweep.spec.identity import plain

TOLERANCE = 1e-6  # scores, losses and every logged number
# Weights: the fused backward sums the shared input's gradient pieces in another order (last-bit differences),
# and Adam turns a last-bit difference of a near-zero gradient into part of an lr-sized step (seen: 1.2e-6
# on one of 128 LoRA B entries of 0.02, the rest within 1e-8, with torch 2.13 and transformers 5.25).
WEIGHT_TOLERANCE = 1e-5
# members of a group differ in seed, learning rate, step count, eval schedule, batch size and lr schedule, and
# per method in what it trains (LoRA: rank, alpha, targets)
COMMON = [
    ["seed=1", "method.lr=0.003"],
    ["seed=2", "method.lr=0.01", "trainer.max_steps=4", "trainer.batch_size=3"],
    ["seed=3", "trainer.eval_every=2", "trainer.schedule=constant"],
]
OWN = {
    "lora": [["method.r=2"], ["method.r=8", "method.alpha=4"], ["method.r=4", "method.targets=[q,k,v,o]"]],
    "bitfit": [[], [], []],
    "ln": [[], [], []],
}
FUSABLE = ["method=lora", "backbone.dropout=0"]


def members(method: str) -> list[list[str]]:
    return [[f"method={method}", "backbone.dropout=0", *c, *o] for c, o in zip(COMMON, OWN[method])]


def _assert_same(solo: RunDir, fused: RunDir) -> None:
    a, b = solo.result(), fused.result()
    for key in ("metrics", "train_subset_metrics", "best_dev_score", "best_step", "steps", "tokens"):
        assert a[key] == pytest.approx(b[key], abs=TOLERANCE), key
    rows_a, rows_b = ([json.loads(x) for x in open(r.path / "metrics.jsonl")] for r in (solo, fused))
    assert len(rows_a) == len(rows_b)
    for x, y in zip(rows_a, rows_b):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key] == pytest.approx(y[key], abs=TOLERANCE), (key, x, y)
    wa, wb = (load_file(r.path / "pet_weights.safetensors") for r in (solo, fused))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] - wb[key]).abs().max() <= WEIGHT_TOLERANCE, key


@pytest.mark.parametrize("method", sorted(OWN))
def test_runs_trained_together_end_where_each_ends_alone(tiny, tmp_path, method):
    solo = [compose(tiny("encoder", *m, f"paths.runs_root={tmp_path}/solo")) for m in members(method)]
    together = [compose(tiny("encoder", *m, f"paths.runs_root={tmp_path}/fused")) for m in members(method)]
    for cfg in solo:
        run(cfg)
    assert run_group([plain(cfg) for cfg in together]) == [0, 0, 0]
    for a, b in zip(solo, together):
        assert run_dir(a).name == run_dir(b).name  # the same identity, fused or not
        _assert_same(RunDir(run_dir(a)), RunDir(run_dir(b)))
        assert len(RunDir(run_dir(b)).result()["fused_with"]) == 2


PAIRS = [(a, b) for a in sorted(OWN) for b in sorted(OWN) if a != b]


@pytest.mark.parametrize("first,second", PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_runs_of_different_methods_trained_together_end_where_each_ends_alone(tiny, tmp_path, first, second):
    # each member's rows see only its own weights: a BitFit member's trained biases in a layer that is LoRA in
    # another member, a LoRA member's update, an LN member's norms
    pair = [members(first)[0], members(second)[2]]
    solo = [compose(tiny("encoder", *m, f"paths.runs_root={tmp_path}/solo")) for m in pair]
    together = [compose(tiny("encoder", *m, f"paths.runs_root={tmp_path}/fused")) for m in pair]
    for cfg in solo:
        run(cfg)
    assert run_group([plain(cfg) for cfg in together]) == [0, 0]
    for a, b in zip(solo, together):
        _assert_same(RunDir(run_dir(a)), RunDir(run_dir(b)))


def _changed(value):
    """Another value of a config leaf's type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if value is None:
        return 1
    if isinstance(value, str):
        return {"auto": "bf16"}.get(value, value + "x")
    if isinstance(value, list):
        return [*value, "x"]
    return {"x": 1}


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


# keys whose generic change is no valid run: budget=1 is below LoRA's r=1 on tiny-bert (256), 512 is r=2
VALID_CHANGES = {"budget": 512}


def test_runs_that_differ_in_any_key_not_routed_per_member_are_planned_apart(tiny):
    from launchers.fusion import units
    from launchers.planning import PlannedRun
    from petsweep.model.resolve import run_hash
    from petsweep.records.status import State
    from petsweep.run.fusable import ROUTED_KEYS, differing_keys

    base = plain(compose(tiny("encoder", *FUSABLE)))
    checked = []
    for key, value in _leaves(base):
        if key in ROUTED_KEYS:
            continue
        other = copy.deepcopy(base)
        *parents, leaf = key.split(".")
        node = other
        for part in parents:
            node = node[part]
        node[leaf] = VALID_CHANGES.get(key, _changed(value))
        if run_hash(other) == run_hash(base):
            continue  # not part of the run's identity (paths, logger, APET's keys while it is off)
        planned = [PlannedRun([], cfg, "", Path(str(k)), State.NEW) for k, cfg in enumerate([base, other])]
        assert [len(u.runs) for u in units(planned, 8, 10**6)] == [1, 1], key
        differ = differing_keys([base, other])  # (a section off in the identity brings all its keys)
        assert key in differ or any(k.startswith(f"{key}.") for k in differ), key  # an empty map: its entries
        checked.append(key)
    # what the frozen backbone computes, its precision and weights' dtype among them
    assert {"backbone.dropout", "trainer.frozen_dtype", "trainer.precision", "task.max_length"} <= {*checked}
    # and runs differing only in routed keys (method, seed, their own schedules) do fuse
    lora = plain(compose(tiny("encoder", *FUSABLE, "method.r=2", "trainer.max_steps=3")))
    bitfit = plain(compose(tiny("encoder", *members("bitfit")[1])))
    planned = [PlannedRun([], cfg, "", Path(str(k)), State.NEW) for k, cfg in enumerate([lora, bitfit])]
    assert [len(u.runs) for u in units(planned, 8, 10**6)] == [2]


def test_a_group_whose_members_hold_frozen_weights_in_different_dtypes_is_refused(tiny, capsys):
    bf16 = plain(compose(tiny("encoder", *FUSABLE, "trainer.frozen_dtype=bf16")))
    auto = plain(compose(tiny("encoder", *FUSABLE, "seed=2")))  # fp32 frozen weights on an fp32 run
    assert run_group([bf16, auto]) == [2, 2]
    assert "differ in trainer.frozen_dtype;" in capsys.readouterr().err
    assert not RunDir(run_dir(bf16)).path.exists()


def test_a_fused_member_is_refused_before_its_claim_as_the_same_run_alone_is(tiny, capsys):
    """#23 review F6: a group checked its members in a copy of execute's preamble without the bf16 check, so
    frozen_dtype=bf16 on a CPU (precision=auto computes in fp32 there) was claimed, loaded and FAILED with a
    dtype mismatch, where the same run alone is refused in one line. Now both pass app.before_claim."""
    from petsweep.spec.errors import PetsweepError

    bf16 = [*FUSABLE, "trainer.frozen_dtype=bf16"]
    cfgs = [plain(compose(tiny("encoder", *bf16, f"seed={s}"))) for s in (1, 2)]
    with pytest.raises(PetsweepError) as alone:
        run(compose(tiny("encoder", *bf16, "seed=1")))
    capsys.readouterr()
    assert run_group(cfgs) == [2, 2]
    err = capsys.readouterr().err
    assert err.count(f"error: {alone.value}") == 2, err
    for cfg in cfgs:  # nothing claimed, nothing recorded
        assert RunDir(run_dir(cfg)).status() is None


def _sweep(tiny_conf, root, *axes):
    return run_cli(*sweep_argv(tiny_conf, root, *axes))


SWEEP = [
    "backbone=tiny-bert",
    "method=lora",
    "backbone.dropout=0",
    "method.r=2,8",
    "method.dropout=0,0.1",
    "seed=1,2",
]


def test_a_fused_sweep_ends_where_the_same_sweep_alone_ends_and_the_plan_says_which_fuse(tiny_conf, tmp_path):
    plan = run_cli(
        "-m", "petsweep.cli", "plan", f"hydra.searchpath=[file://{tiny_conf}]",
        f"paths.runs_root={tmp_path}/f", "sweep_name=study", *QUICK, *SWEEP, "hydra.launcher.fuse=8",
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr[-2000:]
    rows = [line for line in plan.stdout.splitlines() if line.startswith("NEW")]
    assert len(rows) == 8
    assert sum("fused: group 1 (4 runs, 512 tokens a step)" in r for r in rows) == 4  # QUICK: 4 x 32 tokens
    assert sum("alone: LoRA dropout" in r for r in rows) == 4

    fused = _sweep(tiny_conf, tmp_path / "f", *SWEEP, "hydra.launcher.fuse=8")
    alone = _sweep(tiny_conf, tmp_path / "a", *SWEEP)
    assert fused.returncode == 0 and alone.returncode == 0, fused.stdout[-3000:] + alone.stdout[-3000:]
    assert fused.stdout.count(" COMPLETED accuracy ") == 8
    names = sorted(p.name for p in (tmp_path / "a" / "study").glob("tiny-bert-*"))
    assert names == sorted(p.name for p in (tmp_path / "f" / "study").glob("tiny-bert-*")) and len(names) == 8
    for name in names:
        a, b = RunDir(tmp_path / "a" / "study" / name), RunDir(tmp_path / "f" / "study" / name)
        _assert_same(a, b)
        dropout = yaml.safe_load((b.path / "config.yaml").read_text())["method"]["dropout"]
        assert (b.result()["fused_with"] is None) == (dropout > 0)
        assert a.result()["fused_with"] is None
        assert run_row(b.path)["fused_with"] == (0 if dropout > 0 else 3)  # the tidy table's column
        # each member's provenance holds its own overrides (a fused member's were null)
        config = yaml.safe_load((b.path / "config.yaml").read_text())
        mine = json.loads((b.path / "provenance.json").read_text())["overrides"]
        assert f"seed={config['seed']}" in mine and f"method.r={config['method']['r']}" in mine, mine


def test_a_signal_while_a_group_claims_cancels_its_claims_and_starts_nothing(tiny, monkeypatch):
    """#22 review: RunCancelled raised while a group claimed its members escaped run_group: the worker
    exited 1, the claimed member read FAILED ('exited with 1') and another member's line showed its error.
    Now the claims made end CANCELLED (the one the signal interrupted too) and the rest never start."""
    from petsweep.run import app
    from petsweep.spec.errors import EXIT_CANCELLED, RunCancelled

    real, claims = app.claim_run, []

    def claim_then_signal(*args):
        refused = real(*args)
        claims.append(args[0])
        if len(claims) == 2:  # the second claim is written as the signal arrives
            raise RunCancelled("stopped by SIGINT (Ctrl-C)")
        return refused

    monkeypatch.setattr(app, "claim_run", claim_then_signal)
    cfgs = [plain(compose(tiny("encoder", *FUSABLE, f"seed={seed}"))) for seed in (1, 2, 3)]
    assert run_group(cfgs) == [EXIT_CANCELLED] * 3
    first, second, third = (RunDir(run_dir(cfg)) for cfg in cfgs)
    assert first.state() == second.state() == "CANCELLED"
    assert "SIGINT" in second.status()["error"]
    assert third.status() is None


def test_a_member_that_diverges_fails_alone(tiny):
    members = [["seed=1"], ["seed=2", "method.lr=1e30"], ["seed=3", "method.r=4"]]
    cfgs = [compose(tiny("encoder", *FUSABLE, *m)) for m in members]
    assert run_group([plain(cfg) for cfg in cfgs]) == [0, 1, 0]
    ok, diverged, other = (RunDir(run_dir(cfg)) for cfg in cfgs)
    assert (
        diverged.status()["state"] == "FAILED"
        and "FloatingPointError: loss is nan" in diverged.status()["error"]
    )
    assert "FloatingPointError" in (diverged.path / "error.txt").read_text()
    assert ok.state() == other.state() == "COMPLETED"
    assert len(ok.result()["fused_with"]) == 2  # it trained beside both, one of which left


GROUP_SCRIPT = """
import json, sys
from petsweep.compose import compose
from petsweep.run.group import run_group
from petsweep.spec.identity import plain
print(json.dumps(run_group([plain(compose(o)) for o in json.loads(sys.argv[1])])), flush=True)
"""


def test_each_member_is_recorded_when_it_ends_and_a_cancel_keeps_those_records(tiny):
    # one member finishes after 2 steps, one diverges at its first, one trains on for 120 steps (cancelled
    # after its step-20 checkpoint, 100 to go; 400 steps only made the resume long)
    slow = ["trainer.eval_every=60", "trainer.save_every=20"]
    groups = [
        ["seed=1", "trainer.max_steps=2"],
        ["seed=2", "method.lr=1e30"],
        ["seed=3", "trainer.max_steps=120"],
    ]
    overrides = [tiny("encoder", *FUSABLE, *slow, *m) for m in groups]
    done, diverged, long = (RunDir(run_dir(compose(o))) for o in overrides)
    command = [sys.executable, "-c", GROUP_SCRIPT, json.dumps(overrides)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (done.state() == "COMPLETED" and diverged.state() == "FAILED"):
        assert time.time() < deadline and proc.poll() is None, "a member that ended was not recorded"
        time.sleep(0.05)
    assert long.state() == "RUNNING"  # its group goes on without them
    while not list(long.path.glob("checkpoints/step-*")):
        assert time.time() < deadline and proc.poll() is None, "the long member saved no checkpoint"
        time.sleep(0.05)
    assert done.result()["steps"] == 2 and "FloatingPointError" in diverged.status()["error"]
    proc.send_signal(signal.SIGTERM)  # petsweep cancel
    out, _ = proc.communicate(timeout=120)
    assert json.loads(out.splitlines()[-1]) == [0, 1, 143], out[-3000:]
    assert long.state() == "CANCELLED" and done.state() == "COMPLETED" and diverged.state() == "FAILED"
    first = done.result_file.stat().st_mtime_ns
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert json.loads(again.stdout.splitlines()[-1]) == [0, 1, 0], again.stdout[-3000:] + again.stderr[-3000:]
    assert done.result_file.stat().st_mtime_ns == first  # answered from its record, not trained again
    assert long.result()["steps"] == 120 and "resumed from" in (long.path / "train.log").read_text()


def test_a_member_that_ended_keeps_its_record_when_its_worker_is_killed(tiny_conf, tmp_path):
    axes = ["backbone=tiny-bert", "method=lora", "backbone.dropout=0", "trainer.max_steps=2,400"]
    slow = ["trainer.eval_every=200", "trainer.save_every=200"]
    command = [
        sys.executable, "run.py", "-m", f"hydra.searchpath=[file://{tiny_conf}]",
        f"paths.runs_root={tmp_path}", "sweep_name=study", "hydra.launcher.max_parallel=1",
        "hydra.launcher.fuse=4", *QUICK, *axes, *slow,
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    study, deadline = tmp_path / "study", time.time() + 180
    while len(runs := [RunDir(p) for p in study.glob("tiny-bert-*")]) < 2 or "COMPLETED" not in {
        r.state() for r in runs
    }:
        assert time.time() < deadline and proc.poll() is None, "the short member was not recorded as it ended"
        time.sleep(0.05)
    [done] = [r for r in runs if r.state() == "COMPLETED"]
    [long] = [r for r in runs if r is not done]
    assert long.state() == "RUNNING" and done.result()["steps"] == 2
    os.kill(long.status()["pid"], signal.SIGKILL)  # the worker training the group
    out, _ = proc.communicate(timeout=120)
    assert done.state() == "COMPLETED" and long.state() == "FAILED"
    assert "SIGKILL" in long.status()["error"]
    sweep_lines = [x for x in out.splitlines() if x.startswith("[")]  # `[k/N] <run> <outcome> in ...`
    assert [x for x in sweep_lines if done.path.name in x][-1].count(" COMPLETED accuracy "), out[-3000:]
    assert "FAILED" in [x for x in sweep_lines if long.path.name in x][-1], out[-3000:]


def test_an_error_in_the_shared_step_fails_every_member_still_training_with_it(tiny, monkeypatch):
    from petsweep.train import fused

    calls = []
    concat = fused.concat_inputs

    def failing_on_the_fourth_step(batches, pad_id):  # a fault in the shared forward (say, out of memory)
        calls.append(len(batches))
        if len(calls) == 4:
            raise RuntimeError("shared forward broke")
        return concat(batches, pad_id)

    monkeypatch.setattr(fused, "concat_inputs", failing_on_the_fourth_step)
    groups = [["seed=1", "trainer.max_steps=2"], ["seed=2"], ["seed=3", "method.r=4"]]
    cfgs = [compose(tiny("encoder", *FUSABLE, *m)) for m in groups]
    assert run_group([plain(cfg) for cfg in cfgs]) == [0, 1, 1]
    done, *failed = (RunDir(run_dir(cfg)) for cfg in cfgs)
    assert done.state() == "COMPLETED" and done.result()["steps"] == 2
    for run_path in failed:
        assert run_path.status()["state"] == "FAILED"
        assert run_path.status()["error"] == "RuntimeError: shared forward broke"
        assert "shared forward broke" in (run_path.path / "error.txt").read_text()
    assert calls == [3, 3, 2, 2]


def test_each_fused_member_s_sweep_line_shows_its_own_outcome(tmp_path):
    from launchers.progress import outcome

    log = tmp_path / "fused-2.log"
    a, b = tmp_path / "run-a", tmp_path / "run-b"
    log.write_text(f"error: run {a} FAILED: ValueError: a's own\nerror: run {b} FAILED: KeyError: b's own\n")
    assert "a's own" in outcome(a, 1, log) and "b's own" not in outcome(a, 1, log)
    assert "b's own" in outcome(b, 1, log) and "a's own" not in outcome(b, 1, log)


def test_each_fused_member_mirrors_to_its_own_wandb_run(tiny):
    from test_wandb import _inspect

    groups = [["seed=1", "method.r=2"], ["seed=2"], ["seed=3", "trainer.max_steps=3"]]
    cfgs = [compose(tiny("encoder", *FUSABLE, "logger=wandb", *m)) for m in groups]
    assert run_group([plain(cfg) for cfg in cfgs]) == [0, 0, 0]
    for cfg in cfgs:
        run_path = RunDir(run_dir(cfg))
        result = run_path.result()
        summary = json.loads(_inspect(run_path.path, "--summary"))
        assert summary["run_id"] == result["run_id"] and summary["state"] == "finished"
        assert summary["summary"]["score"] == result["score"]
        assert summary["config"]["seed"] == cfg.seed
        history = [
            json.loads(x)["history"]["item"] for x in _inspect(run_path.path).splitlines() if '"history"' in x
        ]
        local = [json.loads(x) for x in run_path.metrics_file.read_text().splitlines()]
        assert [h["_step"] for h in history] == [r["step"] for r in local] and history
        assert [h["eval/accuracy"] for h in history] == [r["dev_accuracy"] for r in local]
        assert "train/loss" in history[-1]  # every trainer.log_every steps and at the last (#26)


def test_an_interrupted_group_resumes_each_member_and_ends_where_alone(tiny_conf, tmp_path):
    # killed after the step-10 checkpoints with 50 fused steps to go (9 s); 120 steps made the resume and the
    # three runs alone long, not the kill surer
    long = ["trainer.max_steps=60", "trainer.save_every=10", "trainer.eval_every=30", "task.k_shot=40"]
    axes = ["backbone=tiny-bert", "method=lora", "backbone.dropout=0", "method.r=2,4,8", *long]
    command = [
        sys.executable, "run.py", "-m", f"hydra.searchpath=[file://{tiny_conf}]",
        f"paths.runs_root={tmp_path}/f", "sweep_name=study", "hydra.launcher.max_parallel=1",
        "hydra.launcher.fuse=4", *QUICK, *axes,
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    study = tmp_path / "f" / "study"
    deadline = time.time() + 180
    while len(list(study.glob("*/checkpoints/step-*"))) < 3:
        assert time.time() < deadline and proc.poll() is None, "the group did not start"
        time.sleep(0.2)
    [pid] = {RunDir(p).status()["pid"] for p in study.glob("tiny-bert-*")}  # one worker trains all three
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    assert {RunDir(p).state() for p in study.glob("tiny-bert-*")} == {"FAILED"}

    again = run_cli(*command[1:])
    assert again.returncode == 0, again.stdout[-3000:]
    alone = _sweep(tiny_conf, tmp_path / "a", *axes)
    assert alone.returncode == 0, alone.stdout[-3000:]
    for path in study.glob("tiny-bert-*"):
        assert "resumed from" in (path / "train.log").read_text()
        _assert_same(RunDir(tmp_path / "a" / "study" / path.name), RunDir(path))


def test_a_group_of_runs_that_differ_in_backbone_or_cannot_fuse_is_refused_in_one_line(tiny, capsys):
    bert = plain(compose(tiny("encoder", *FUSABLE)))
    roberta = plain(compose(tiny("roberta", *FUSABLE)))
    with_dropout = plain(compose(tiny("encoder", "method=lora")))
    assert run_group([bert, roberta]) == [2, 2]
    assert "differ in backbone.hub_id, backbone.model_type, backbone.name;" in capsys.readouterr().err
    assert run_group([bert, with_dropout]) == [2, 2]
    assert "cannot train fused: the backbone's dropout masks" in capsys.readouterr().err
    assert not RunDir(run_dir(bert)).path.exists()  # nothing claimed


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_fuse_that_is_not_a_group_size_is_one_line_before_anything_runs(tiny_conf, tmp_path, value):
    out = _sweep(tiny_conf, tmp_path, "backbone=tiny-bert", "seed=1,2", f"hydra.launcher.fuse={value}")
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1 and "hydra.launcher.fuse" in errors[0], out.stderr[-2000:]
    assert not list(tmp_path.rglob("status.json"))


@pytest.mark.parametrize("k_shot,encodes", [("null", 4), ("8", 12)])
def test_members_that_read_the_same_examples_tokenise_them_once_and_end_where_each_ends_alone(
    tiny, tmp_path, monkeypatch, k_shot, encodes
):
    # one tokenisation of each split (train, dev, test, the train subset) for the group where every member
    # reads the same examples; a k-shot train split is drawn with each run's seed: each tokenises its own
    from petsweep.model.objectives import ClassifierObjective

    calls = []
    encode = ClassifierObjective.encode

    def counted(self, examples):
        calls.append(len(examples))
        return encode(self, examples)

    monkeypatch.setattr(ClassifierObjective, "encode", counted)
    task = [f"task.k_shot={k_shot}", "task.max_train_examples=40"]
    solo = [compose(tiny("encoder", *m, *task, f"paths.runs_root={tmp_path}/solo")) for m in members("lora")]
    together = [
        compose(tiny("encoder", *m, *task, f"paths.runs_root={tmp_path}/fused")) for m in members("lora")
    ]
    for cfg in solo:
        run(cfg)
    calls.clear()
    assert run_group([plain(cfg) for cfg in together]) == [0, 0, 0]
    assert len(calls) == encodes
    for a, b in zip(solo, together):
        _assert_same(RunDir(run_dir(a)), RunDir(run_dir(b)))


def _graph_names(tensor) -> set[str]:
    seen, names, todo = set(), set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo += [n for n, _ in node.next_functions]
    return names


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lora_members_at_one_row_count_run_a_layer_as_one_update_without_per_member_slices(dtype):
    # the shared projection plus one batched update over every row (no slice and concatenation per member,
    # whose backward zero-fills a whole-batch tensor per member), equal to each member's own layer
    import torch
    from peft import LoraConfig
    from peft.tuners.lora import Linear as LoraLinear
    from torch import nn

    from petsweep.train import fused

    dtype = getattr(torch, dtype)
    torch.manual_seed(0)
    base = nn.Linear(16, 12).requires_grad_(False)
    layers = []
    for r, alpha in [(2, 4), (8, 16), (3, 16)]:  # 16 / 3: a scale a bf16 tensor would round
        config = LoraConfig(r=r, lora_alpha=alpha)
        layer = LoraLinear(copy.deepcopy(base), "default", config, r=r, lora_alpha=alpha)
        nn.init.normal_(layer.lora_B["default"].weight)  # B starts at zero: an update that counts
        layers.append(layer.to(dtype))
    rows = fused.Rows([3, 3, 3])
    layer = fused.FusedLoRA(base.to(dtype), [None] * 3, layers, rows)
    x = torch.randn(9, 5, 16, dtype=dtype)
    out = layer(x)
    assert not {"CatBackward0", "SliceBackward0"} & _graph_names(out)
    out.float().square().sum().backward()
    grads = [p.grad.clone() for m in layers for p in m.parameters() if p.requires_grad]
    for m in layers:
        m.zero_grad()
    for m, (_, mine) in zip(layers, rows.slices()):
        alone = m(x[mine])
        if dtype == torch.float32:
            assert (alone - out[mine]).abs().max() <= 1e-6 * alone.abs().max()
        alone.float().square().sum().backward()
    alone_grads = [p.grad for m in layers for p in m.parameters() if p.requires_grad]
    if dtype == torch.float32:
        assert all((a - b).abs().max() <= 1e-6 * a.abs().max() for a, b in zip(grads, alone_grads))
    # the same numbers as the per-member pieces (the batched products split by member), to the bit
    original = fused.FusedLoRA._whole
    try:
        fused.FusedLoRA._whole = lambda *args: None
        pieces = layer(x)
    finally:
        fused.FusedLoRA._whole = original
    assert "CatBackward0" in _graph_names(pieces)
    assert torch.equal(pieces, out)


def test_each_member_of_a_group_counts_the_group_s_steps_as_its_training_time(tiny):
    # a member's step is the group's shared step (from the first member's batch to the last member's update),
    # never the dev evaluations and final scoring of the members that ended the same step before it
    members = [["seed=1"], ["seed=2", "method.r=4"], ["seed=3", "method.r=2"]]
    cfgs = [compose(tiny("encoder", *FUSABLE, *m)) for m in members]
    assert run_group([plain(cfg) for cfg in cfgs]) == [0, 0, 0]
    results = [RunDir(run_dir(cfg)).result() for cfg in cfgs]
    assert len({r["train_time_s"] for r in results}) == 1
    assert len({r["step_time_s"] for r in results}) == 1
    assert results[0]["train_time_s"] > 0
