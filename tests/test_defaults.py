"""Defaults that compare methods fairly (#26): one head learning rate for every method."""

from __future__ import annotations

import json

import pytest

from petsweep.compose import compose
from petsweep.model.backbones import load_pretrained
from petsweep.model.params import attach_method
from petsweep.model.resolve import resolve_run, run_dir, run_hash, semantic_config
from petsweep.run.app import run
from petsweep.spec.errors import ConfigError


def _group_lrs(overrides: list[str]) -> dict[str, float]:
    spec = resolve_run(compose(overrides))
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, _ = attach_method(model, spec, tokenizer=tokenizer)
    return {g.name: g.lr for g in attached.groups}


def test_the_task_head_trains_at_one_lr_for_every_method_and_null_keeps_the_old_rule(tiny):
    """Prompt tuning's 0.3 and full FT's 5e-5 went to the new random head too (trainer.head_lr: null), so a
    method comparison compared head learning rates. Now every method's head trains at trainer.head_lr
    (2e-3); null is the old rule and keeps old records' ids; method=head's head is its own lr."""
    for method, lr in (("prompt", 0.3), ("full", 5e-5), ("lora", 2e-3), ("bitfit", 2e-3)):
        lrs = _group_lrs(tiny("encoder", f"method={method}"))
        assert lrs["head"] == 2e-3 and lrs["method"] == lr, method
    assert _group_lrs(tiny("encoder", "method=prompt", "trainer.head_lr=null"))["head"] == 0.3
    assert _group_lrs(tiny("encoder", "method=head", "method.lr=1e-2")) == {"head": 1e-2}

    def ids(*overrides: str) -> str:
        return run_hash(compose(["task=bbc_news", *overrides]))

    assert ids("method=lora", "backbone=minilm-l6") == "9deb1d1591df" + ids()[12:]  # the default job
    # LoRA's head trained at 2e-3 before too: the same run, the same id as head_lr=null
    assert ids("method=lora", "trainer.head_lr=null") == ids("method=lora")
    assert ids("method=prompt", "trainer.head_lr=null") != ids("method=prompt")  # computes otherwise
    assert semantic_config(compose(["method=prompt", "trainer.head_lr=null"]))["trainer"]["head_lr"] is None
    # no head petsweep adds (T5), or method=head: head_lr changes nothing, hashed as null as before
    t5 = ("backbone=t5-small", "method=prompt")
    assert ids(*t5) == ids(*t5, "trainer.head_lr=null")
    assert ids("method=head") == ids("method=head", "trainer.head_lr=null")


def test_a_run_whose_method_parameters_change_no_prediction_says_so(tiny):
    """APET's K scalars at a tiny lr move by ~1e-6 and change no dev prediction: pet_moved is false, the
    record says how far they moved, and train.log warns; LoRA at a large lr changes predictions."""
    still = run(compose(tiny("encoder", "method=apet", "apet.scale=10", "method.lr=1e-7")))
    assert still["pet_moved"] is False
    movement = still["pet_movement"]
    assert movement["params"] == 10 and movement["initial_norm"] == 0 and 0 < movement["change_norm"] < 1e-4
    assert movement["predictions_changed"] == 0 and movement["examples"] == 20
    log = run_dir(compose(tiny("encoder", "method=apet", "apet.scale=10", "method.lr=1e-7"))) / "train.log"
    assert "change none of 20 dev predictions" in log.read_text()
    moved = run(compose(tiny("encoder", "method=lora", "method.lr=0.5")))
    assert moved["pet_moved"] is True and moved["pet_movement"]["predictions_changed"] > 0, moved[
        "pet_movement"
    ]
    assert moved["pet_movement"]["relative_change"] > 0
    recorded = json.loads(
        (run_dir(compose(tiny("encoder", "method=lora", "method.lr=0.5"))) / "result.json").read_text()
    )
    assert recorded["pet_moved"] is True and recorded["pet_movement"] == moved["pet_movement"]
    assert not list(run_dir(compose(tiny("encoder", "method=lora", "method.lr=0.5"))).glob("pet_initial*"))


def test_apet_trains_at_a_default_lr_that_moves_its_scalars_and_old_defaults_keep_their_ids():
    """APET's default lr was 1e-3: K=1000 on MiniLM-L1 changed no dev prediction in 60 steps
    (docs/lr_sweep.md). The default is 1e-1 now; a run asking for the old defaults (lr 1e-3, the head at the
    method's lr) has the old default run's id (computed on the tree before 6b8b8f1: 41d4d7a0af7c; prompt's
    f232f77c4aad)."""
    apet = ["method=apet", "apet.scale=lora", "backbone=minilm-l1"]
    assert resolve_run(compose(apet)).method.config.lr == 0.1
    old = [*apet, "method.lr=1e-3", "trainer.head_lr=null"]
    assert run_hash(compose(old))[:12] == "41d4d7a0af7c" != run_hash(compose(apet))[:12]
    prompt = ["method=prompt", "backbone=minilm-l1", "trainer.head_lr=null"]
    assert run_hash(compose(prompt))[:12] == "f232f77c4aad"


def test_readmes_apet_budget_sweep_passes_the_preflight_as_the_planner_expands_it(tmp_path):
    """`python run.py -m apet.scale=lora,adapter,4096,65536 apet.seed=1,2,3` (docs/methods.md, APET) was
    refused by run.py's pre-flight ("set both, or neither") while `petsweep plan` accepted it: the planner
    makes a run with an APET budget and no method an APET run, and the pre-flight now leaves a sweep of
    petsweep's sweepers to it (#23)."""
    from launchers.expand import expand
    from launchers.planning import plan
    from petsweep.cli import preflight

    argv = ["-m", "apet.scale=lora,adapter,4096,65536", "apet.seed=1,2,3"]
    assert preflight(list(argv)) is None
    assert [r[-1] for r in expand(argv[1:])] == ["method=apet"] * 12
    sweep = ["apet.scale=lora,4096", "method=lora", f"paths.runs_root={tmp_path}"]
    assert preflight(["-m", *sweep]) is None  # petsweep's sweeper: its plan validates the runs (#23)
    with pytest.raises(ConfigError, match="set both, or neither"):
        plan(expand(sweep), compose)  # a method named otherwise stays refused
    with pytest.raises(ConfigError, match="set both, or neither"):
        preflight(["apet.scale=4096"])  # a single run is composed as written, as Hydra runs it
