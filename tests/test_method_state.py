"""A method's state beside its parameters (Attached.buffers: sampled positions, a selection) is saved in
checkpoints and pet_weights and restored with them, so a resumed run carries it on exactly."""

from __future__ import annotations

import pytest
import torch
from conftest import crash_after_second_save
from safetensors.torch import load_file
from test_resume import _assert_same_run
from torch import nn

from petsweep.compose import compose
from petsweep.methods.bitfit import BitFitMethod
from petsweep.model.resolve import run_dir
from petsweep.records.status import RunDir
from petsweep.run.app import run
from petsweep.train import checkpoint


def test_buffers_named_in_keep_are_saved_and_loaded_and_others_are_not():
    model = nn.Linear(3, 2)
    model.register_buffer("positions", torch.tensor([4, 1, 7]))
    keep = {id(model.weight), id(model.positions)}
    state = checkpoint.trainable_state(model, keep)
    assert set(state) == {"weight", "positions"}
    assert set(checkpoint.trainable_state(model)) == {"weight", "bias"}  # default: trained parameters only
    model.positions.zero_()
    checkpoint.load_trainable(model, state)
    assert model.positions.tolist() == [4, 1, 7]


@pytest.fixture
def counting_bitfit(monkeypatch):
    """BitFit plus a buffer that counts training forwards: state that changes while training, as a dynamic
    selection would; a resume that lost it would restart the count."""
    attach = BitFitMethod.attach

    def attach_with_state(self, model, ctx):
        attached = attach(self, model, ctx)
        model.register_buffer("forwards", torch.zeros((), dtype=torch.long, device=model.device))

        def count(module, args, kwargs, output):
            if module.training:
                module.forwards += 1

        model.register_forward_hook(count, with_kwargs=True)
        attached.buffers.append(model.forwards)
        return attached

    monkeypatch.setattr(BitFitMethod, "attach", attach_with_state)


def test_a_methods_buffers_are_recorded_and_resumed_exactly(counting_bitfit, tiny, tmp_path, monkeypatch):
    extra = ("method=bitfit", "trainer.max_steps=8", "trainer.eval_every=4", "trainer.save_every=2")
    reference = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/reference"))
    best_step = run(reference)["best_step"]
    # the selected weights carry the state they were selected with: one training forward per step
    assert load_file(run_dir(reference) / "pet_weights.safetensors")["forwards"].item() == best_step

    crashing = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/crashing"))
    crash_after_second_save(crashing, monkeypatch)  # after step 4's checkpoint
    saved = load_file(checkpoint.step_dir(run_dir(crashing) / "checkpoints", 4) / "trainable.safetensors")
    assert saved["forwards"].item() == 4
    run(crashing)
    # the resumed process counted on from the restored 4, not from a fresh 0
    after = load_file(checkpoint.step_dir(run_dir(crashing) / "checkpoints", 6) / "trainable.safetensors")
    assert after["forwards"].item() == 6
    _assert_same_run(RunDir(run_dir(reference)), RunDir(run_dir(crashing)))
