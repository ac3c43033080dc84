"""Sequential composition: stages with their own steps and optimizers, later methods attached when their
stage begins, earlier ones frozen, and a resume inside any stage that ends where an uninterrupted run does."""

from __future__ import annotations

import pytest
import torch
from conftest import crash_after_second_save
from safetensors.torch import load_file
from test_resume import _assert_same_run

from petsweep.compose import compose
from petsweep.model.backbones import load_pretrained
from petsweep.model.params import attach_method, begin_stage, check_on_meta
from petsweep.model.resolve import resolve_run, run_dir
from petsweep.records.status import COMPLETED, FAILED, RunDir
from petsweep.run.app import run
from petsweep.spec.errors import ConfigError
from petsweep.train import checkpoint

PROMPT_THEN_LORA = "method.members=[{name: prompt, length: 4}, {name: lora, r: 2}]"


def _spec(tiny, *extra):
    return resolve_run(compose(tiny("encoder", "method=sequential", *extra)))


@pytest.mark.parametrize(("max_steps", "split"), [(6, [2, 2, 2]), (7, [2, 2, 3]), (3, [1, 1, 1])])
def test_stages_split_max_steps_evenly_by_default(tiny, max_steps, split):
    spec = _spec(tiny, f"trainer.max_steps={max_steps}")
    assert spec.method.stage_steps(max_steps) == split


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (("method.steps=[2,2,1]",), "method.steps"),  # sums to 5, trainer.max_steps is 6
        (("method.steps=[3,3]",), "method.steps"),  # two counts for three stages
        (("method.steps=[6,0,0]",), "method.steps"),  # a stage without steps
        (("trainer.max_steps=2",), "trainer.max_steps"),  # an even split leaves a stage without steps
        (("method.members=[{name: lora}]",), "method.members"),  # one member is no sequence
        (("method.members=[{name: lora}, {name: compose}]",), "method.members"),
        (("method.steps=[2,2,2]", "deepspeed=zero2"), "deepspeed.preset"),  # engines keep their optimizer
    ],
)
def test_bad_stages_are_one_line_before_anything_runs(tiny, extra, key):
    cfg = compose(tiny("encoder", "method=sequential", *extra))
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert str(err.value).startswith(key) and "\n" not in str(err.value)
    assert not run_dir(cfg).exists()


def test_a_later_stage_is_attached_when_it_begins_and_earlier_ones_freeze(tiny):
    spec = _spec(tiny, "method.members=[{name: bitfit}, {name: prompt, length: 4}]")
    model, _ = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, counts = attach_method(model, spec, stage=0)
    assert not hasattr(model, "soft_prompt")  # the prompt is not in the model before its stage
    biases = [p for g in attached.groups if g.name != "head" for p in g.params]
    head = next(g for g in attached.groups if g.name == "head").params

    groups, buffers = begin_stage(attached, spec, 1)
    assert buffers == []
    assert [g.name for g in groups] == ["1.prompt", "head"]
    assert groups[0].params == [model.soft_prompt.embedding]
    assert not any(p.requires_grad for p in biases) and all(p.requires_grad for p in head)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for g in groups for p in g.params}
    # every stage's parameters are counted (and recorded) as the method's
    assert check_on_meta(spec).pet_params == counts.pet_params + model.soft_prompt.embedding.numel()


def test_a_stage_begins_from_a_seed_of_its_own_not_the_training_rng(tiny):
    spec = _spec(tiny, PROMPT_THEN_LORA)
    prompts = []
    for draws in (0, 5):
        torch.manual_seed(0)
        model, _ = load_pretrained(spec.backbone, spec.task.num_labels)
        attached, _ = attach_method(model, spec, stage=0)
        torch.rand(draws)  # training consumed the global RNG differently
        state = torch.get_rng_state()
        begin_stage(attached, spec, 1)
        assert torch.equal(state, torch.get_rng_state())  # and attaching leaves it where it was
        prompts.append([p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n])
    assert all(torch.equal(a, b) for a, b in zip(*prompts))


def test_earlier_stages_stay_frozen_and_every_stage_is_saved(tiny):
    cfg = compose(tiny("encoder", "method=sequential", PROMPT_THEN_LORA))  # stages of 3 steps each
    run(cfg)
    path = RunDir(run_dir(cfg)).path
    assert RunDir(path).state() == COMPLETED
    log = (path / "train.log").read_text()
    assert "stage 2 of 2 begins: 1.lora, head" in log
    after_stage_one = load_file(checkpoint.step_dir(path / "checkpoints", 3) / "trainable.safetensors")
    assert not any("lora" in name for name in after_stage_one)  # LoRA did not exist yet
    final = load_file(path / "pet_weights.safetensors")
    assert torch.equal(final["soft_prompt.embedding"], after_stage_one["soft_prompt.embedding"])
    lora_b = [t for name, t in final.items() if "lora_B" in name]
    assert lora_b and all(torch.any(t != 0) for t in lora_b)  # trained in stage 2 (B starts at zero)


@pytest.mark.parametrize(
    "steps", ["[4,4]", "[3,5]"]
)  # the crash lands on a stage boundary, or inside stage 2
def test_a_run_resumed_in_any_stage_ends_where_an_uninterrupted_one_does(tiny, tmp_path, monkeypatch, steps):
    extra = (
        "method=sequential",
        PROMPT_THEN_LORA,
        f"method.steps={steps}",
        "trainer.max_steps=8",
        "trainer.eval_every=2",
        "trainer.save_every=2",
    )
    reference = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/reference"))
    run(reference)
    crashing = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/crashing"))
    crash_after_second_save(crashing, monkeypatch)  # after step 4
    assert RunDir(run_dir(crashing)).state() == FAILED
    run(crashing)
    assert "resumed from step-00000004" in (RunDir(run_dir(crashing)).path / "train.log").read_text()
    _assert_same_run(RunDir(run_dir(reference)), RunDir(run_dir(crashing)))
