"""DeepSpeed ZeRO on CPU (gloo backend, one process): tiny runs through the real deepspeed.initialize path."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_resume import _assert_same_run

from petsweep.compose import compose
from petsweep.model.resolve import run_dir
from petsweep.records.status import COMPLETED, RunDir
from petsweep.run.app import run
from petsweep.spec.config import DeepSpeedConfig


@pytest.mark.parametrize("preset", ["zero2", "zero3"])
def test_zero_run_completes_and_saves_whole_pet_weights(tiny, preset):
    # threshold 0: ZeRO-3 partitions even the small LoRA tensors, so saving must gather them first
    cfg = compose(tiny("encoder", f"deepspeed={preset}", "deepspeed.param_persistence_threshold=0"))
    result = run(cfg)
    record = RunDir(run_dir(cfg))
    assert record.state() == COMPLETED and result["deepspeed"] == preset
    weights = load_file(record.path / "pet_weights.safetensors")
    assert sum(t.numel() for t in weights.values()) == result["trainable_params"] > 0
    assert all(t.abs().sum() > 0 for name, t in weights.items() if "lora_A" in name)
    rows = [json.loads(line) for line in record.metrics_file.read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6] and rows[-1]["train_loss"] > 0


def test_zero3_resume_from_its_own_checkpoint(tiny, tmp_path, monkeypatch):
    from petsweep.train import distributed

    extra = ("deepspeed=zero3", "trainer.max_steps=8", "trainer.save_every=4", "trainer.eval_every=4")
    cfg = compose(tiny("encoder", *extra))
    real_save = distributed.DeepSpeedStepper.save

    def save_then_stop(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        raise KeyboardInterrupt("stopped after the step-4 checkpoint")

    monkeypatch.setattr(distributed.DeepSpeedStepper, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    monkeypatch.setattr(distributed.DeepSpeedStepper, "save", real_save)
    result = run(cfg)
    assert (
        result["steps"] == 8
        and "resumed from step-00000004" in (RunDir(run_dir(cfg)).path / "train.log").read_text()
    )
    reference = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/reference"))
    run(reference)
    _assert_same_run(RunDir(run_dir(reference)), RunDir(run_dir(cfg)))


def test_auto_preset_picks_by_size():
    auto = DeepSpeedConfig()
    assert auto.resolved(22_000_000).preset == "none"  # no GPU here, and small anyway
    assert DeepSpeedConfig(preset="zero2", stage=2).resolved(10**12).stage == 2  # explicit presets are kept


STAGED = ["method=sequential", "method.members=[{name: prompt, length: 4}, {name: lora, r: 2}]"]


def test_a_staged_method_is_refused_under_any_deepspeed_preset_once_auto_is_resolved(tiny):
    """#23 review F7: the staged rule is one function (spec.config.check_staged_preset): validation lets
    `auto` through (its preset is not known yet) and the preset `auto` resolves to is checked by it too."""
    from petsweep.model.resolve import resolve_run
    from petsweep.spec.config import check_staged_preset
    from petsweep.spec.errors import ConfigError

    spec = resolve_run(compose(tiny("encoder", *STAGED, "deepspeed=auto")))  # accepted: auto not resolved
    method, steps = spec.method, spec.trainer.max_steps
    for fine in (DeepSpeedConfig(), DeepSpeedConfig(preset="none")):
        check_staged_preset(method, steps, fine)
    for preset, stage in (("zero2", 2), ("zero3", 3), ("zero3_offload", 3)):  # what `auto` may resolve to
        with pytest.raises(ConfigError) as err:
            check_staged_preset(method, steps, DeepSpeedConfig(preset=preset, stage=stage))
        assert str(err.value).startswith(f"deepspeed.preset='{preset}'") and "\n" not in str(err.value)
    one_stage = resolve_run(compose(tiny("encoder", "method=lora"))).method
    check_staged_preset(one_stage, steps, DeepSpeedConfig(preset="zero3", stage=3))


def test_a_staged_method_with_auto_is_refused_before_its_claim_where_auto_means_zero3(tmp_path):
    """#23 review F7: sequential on llama2-7b with deepspeed=auto passed validation, and on a GPU (where
    `auto` is ZeRO-3 from 3B parameters) was claimed and loaded 7B weights before Training refused it. The
    pre-claim checks (run.app.before_claim) resolve `auto` on this machine and refuse it there; on a CPU
    `auto` is no DeepSpeed and the run passes them. Nothing is claimed either way."""
    from petsweep.model.resolve import resolved_run
    from petsweep.run.app import before_claim
    from petsweep.spec.errors import ConfigError

    cfg = compose(["backbone=llama2-7b", *STAGED, "trainer.ranks=1", f"paths.runs_root={tmp_path}"])
    resolved = resolved_run(cfg)
    if DeepSpeedConfig().resolved(7 * 10**9).preset == "none":  # no GPU: `auto` is no DeepSpeed here
        assert before_claim(resolved).reused is None
    else:
        with pytest.raises(ConfigError) as err:
            before_claim(resolved)
        assert str(err.value).startswith("deepspeed.preset='zero3") and "trains in stages" in str(err.value)
    assert not run_dir(cfg).exists()


def test_apet_under_zero3_trains_its_positions_as_without_deepspeed(tiny, tmp_path):
    """ZeRO-3 partitions the frozen matrices APET's sampled gradients read (threshold 0: every tensor); the
    run trains exactly K scalars and ends where the same run without DeepSpeed ends."""
    extra = ("method=apet", "apet.scale=500", "deepspeed.param_persistence_threshold=0")
    sharded = compose(tiny("encoder", "deepspeed=zero3", *extra))
    result = run(sharded)
    plain_cfg = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/plain"))
    reference = run(plain_cfg)
    assert result["deepspeed"] == "zero3" and result["apet"]["achieved"] == 500
    weights = load_file(RunDir(run_dir(sharded)).path / "pet_weights.safetensors")
    deltas = {n: t for n, t in weights.items() if n.endswith(".delta")}
    assert sum(t.numel() for t in deltas.values()) == 500 and all(t.abs().sum() > 0 for t in deltas.values())
    expected = load_file(RunDir(run_dir(plain_cfg)).path / "pet_weights.safetensors")
    for name, tensor in weights.items():
        assert torch.allclose(tensor, expected[name], atol=1e-5), name
    assert result["metrics"] == pytest.approx(reference["metrics"], abs=1e-6)
