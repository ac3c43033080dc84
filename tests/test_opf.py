"""OPF: matrices chosen by gradient importance, MPO tensors that really train, dense weights saved, dynamic
rounds that rebuild the optimizer and resume exactly, and one-line refusals."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import crash_after_second_save
from safetensors.torch import load_file
from test_resume import _assert_same_run

from petsweep.compose import compose
from petsweep.methods.opf.layer import MpoLinear
from petsweep.model.backbones import load_pretrained
from petsweep.model.params import attach_method, check_on_meta
from petsweep.model.resolve import resolve_run, run_dir, run_hash
from petsweep.records.status import RunDir
from petsweep.run.app import run
from petsweep.spec.errors import ConfigError
from petsweep.spec.identity import plain
from petsweep.train.checkpoint import trainable_state

FAMILIES = ("q", "k", "v", "o", "ffn_in", "ffn_out")


def test_bert_base_count_is_the_seed_shapes_over_parameterisation():
    """Five matrices per family with the OPF code's BERT shapes: each attention matrix 589,824 -> 5,234,688,
    each FFN matrix 2,359,296 -> 20,938,752, on top of full fine-tuning."""
    spec = resolve_run(
        compose(["backbone=bert-base", "task=rte", "method=opf", "method.top_n=5", "method/shapes=bert"])
    )
    counts = check_on_meta(spec)
    extra = 20 * (5_234_688 - 589_824) + 10 * (20_938_752 - 2_359_296)
    assert counts.pet_params == counts.total_params + extra == 388_174_080


def test_saved_weights_are_dense_and_give_the_mpo_models_outputs(tiny):
    spec = resolve_run(compose(tiny("encoder", "method=opf", "method.top_n=1")))
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, _ = attach_method(model, spec, tokenizer=tokenizer)
    mpos = [m for m in attached.model.modules() if isinstance(m, MpoLinear)]
    assert len(mpos) == len(FAMILIES)
    with torch.no_grad():  # as if trained: every local tensor moved
        for mpo in mpos:
            for tensor in mpo.tensors:
                tensor.add_(0.05 * torch.randn_like(tensor))
    batch = tokenizer(["a first text", "and a second, longer one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = attached.model.eval()(**batch).logits
    dense = spec.method.saved_state(attached.model, trainable_state(attached.model))
    assert not any(".tensors." in name for name in dense)
    bare = load_pretrained(spec.backbone, spec.task.num_labels)[0]
    size = sum(p.numel() for p in bare.parameters())
    missing, unexpected = bare.load_state_dict(dense, strict=False)
    assert not unexpected and not [n for n in missing if "weight" in n and "embeddings" not in n]
    assert sum(p.numel() for p in bare.parameters()) == size
    with torch.no_grad():
        torch.testing.assert_close(bare.eval()(**batch).logits, expected, atol=1e-5, rtol=1e-5)


def _run(tiny, *extra):
    cfg = compose(tiny("encoder", "method=opf", *extra))
    return cfg, run(cfg)


def test_static_choice_is_the_top_importance_and_the_mpo_tensors_train(tiny):
    """With the dense backbone frozen, only the chosen matrices (through their MPO tensors) and the head can
    change: they do (the seed code never stepped its MPO tensors), and nothing else does."""
    cfg, result = _run(tiny, "method.top_n=1", "method.train_backbone=false", "method.mpo_lr=0.01")
    scores = json.loads((run_dir(cfg) / "importance.json").read_text())["0"]
    chosen = {e["family"]: e["name"] for e in result["opf"]["chosen"]}
    assert set(chosen) == set(FAMILIES) and all(e["round"] == 0 for e in result["opf"]["chosen"])
    for family, name in chosen.items():
        layer = name.split(".layer.")[1].split(".")[0]
        rival = name.replace(f".layer.{layer}.", f".layer.{1 - int(layer)}.")
        assert scores[f"{name}.weight"] >= scores[f"{rival}.weight"], family
    saved = load_file(run_dir(cfg) / "pet_weights.safetensors")
    pretrained = load_pretrained(resolve_run(cfg).backbone, 5)[0].state_dict()
    changed = {
        n for n in saved if n.startswith("bert.") and not torch.equal(saved[n], pretrained[n])
    }  # the backbone's tensors (the new head trains too)
    assert changed == {f"{name}.weight" for name in chosen.values()}
    ratio = result["opf"]["chosen"][0]["ratio"]
    assert ratio == round(
        result["opf"]["chosen"][0]["mpo_params"] / result["opf"]["chosen"][0]["dense_params"], 4
    )


DYNAMIC = ("method.strategy=dynamic", "method.top_n=2", "method.split_num=2", "trainer.max_steps=8")


def test_dynamic_rounds_add_matrices_and_continue_one_schedule(tiny):
    cfg, result = _run(tiny, *DYNAMIC, "trainer.eval_every=1", "trainer.warmup_ratio=0")
    rounds = [e["round"] for e in result["opf"]["chosen"]]
    assert sorted(rounds) == [0] * 6 + [1] * 6  # one matrix per family per round: both layers in the end
    scores = json.loads((run_dir(cfg) / "importance.json").read_text())
    assert set(scores) == {"0", "1"} and len(scores["1"]) == 6  # round 1 scores what round 0 left
    lrs = [json.loads(line)["lr"] for line in RunDir(run_dir(cfg)).metrics_file.read_text().splitlines()]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == 0  # no second warmup at the round boundary


def test_a_round_keeps_the_adamw_state_of_tensors_that_go_on_training(tiny, monkeypatch):
    """Across the round boundary (step 4 | 5) a continuing tensor's AdamW state goes on as one optimizer never
    rebuilt would have it: the rebuilt optimizer holds the very state (moments, step) the old one had, the
    step after is step 5 with moments that are step 4's updated by one gradient (m5 - b1 m4 is (1 - b1) g
    and v5 - b2 v4 is (1 - b2) g^2, the same g); the tensors round 1 adds start at step 1."""
    from petsweep.train import checkpoint
    from petsweep.train.loop import Training

    real_begin, handed = Training._begin_stage, []

    def begin_and_compare(self, index):
        old = {p: {k: v.clone() for k, v in s.items()} for p, s in self.stepper.optimizer.state.items()}
        real_begin(self, index)
        new = self.stepper.optimizer.state
        handed.append(sum(p in new for p in old))
        for param, state in new.items():
            assert state.keys() == old[param].keys()
            assert all(torch.equal(state[k], old[param][k]) for k in state)

    monkeypatch.setattr(Training, "_begin_stage", begin_and_compare)
    real_save, kept = checkpoint.save, {}

    def save_and_read(root, step, *args, **kwargs):
        path = real_save(root, step, *args, **kwargs)
        if step in (4, 5):
            kept[step] = load_file(path / "optimizer.safetensors")
        return path

    monkeypatch.setattr(checkpoint, "save", save_and_read)
    cfg, _ = _run(tiny, *DYNAMIC, "trainer.save_every=1", "trainer.eval_every=8")
    before, after = kept[4], kept[5]
    assert before["0.step"].item() == 4 and after["0.step"].item() == 5  # the first dense tensor
    b1, b2 = 0.9, 0.999
    grad = (after["0.exp_avg"] - b1 * before["0.exp_avg"]) / (1 - b1)
    squared = (after["0.exp_avg_sq"] - b2 * before["0.exp_avg_sq"]) / (1 - b2)
    torch.testing.assert_close(grad**2, squared, rtol=2e-2, atol=1e-12)
    steps = sorted({int(t.item()) for name, t in after.items() if name.endswith(".step")})
    assert steps == [1, 5]  # round 1's new MPO tensors fresh; everything else goes on
    assert len(handed) == 1 and handed[0] > 0


def test_rounds_begin_where_opfs_epoch_rule_puts_them(tiny):
    """OPF starts a round at every epoch e with e % ceil(E / split_num) == 0: 0/40/80% of 10 epochs in 3
    rounds, 0/35/70% of 20, and only 5 rounds of a split 8 over 10 epochs; round_epochs=null: equal shares."""

    def steps(*extra):
        spec = resolve_run(compose(tiny("encoder", "method=opf", "method.strategy=dynamic", *extra)))
        return spec.method.stage_steps(1000)

    assert steps("method.top_n=3", "method.split_num=3") == [400, 400, 200]
    assert steps("method.top_n=3", "method.split_num=3", "method.round_epochs=20") == [350, 350, 300]
    assert steps("method.top_n=8", "method.split_num=8") == [200] * 5
    assert steps("method.top_n=3", "method.split_num=3", "method.round_epochs=null") == [334, 334, 332]


def test_records_from_before_opfs_gauge_rounds_and_optimizer_keep_their_ids(tiny):
    """A run recorded before these keys did the old thing (central gauge, equal shares, AdamW state reset):
    it keeps its id, the old behaviour can still be asked for by those values, and the new defaults, which
    compute different numbers, get a new id."""
    old = ("method.gauge=central", "method.round_epochs=null", "method.keep_optimizer_state=false")
    asked = plain(compose(tiny("encoder", "method=opf", *DYNAMIC, *old)))
    recorded = {**asked, "method": {k: v for k, v in asked["method"].items() if k not in _NEW_KEYS}}
    assert run_hash(recorded) == run_hash(asked)
    assert run_hash(compose(tiny("encoder", "method=opf", *DYNAMIC))) != run_hash(asked)
    for key in old:  # each key alone changes the id
        one = compose(tiny("encoder", "method=opf", *DYNAMIC, key))
        assert run_hash(one) not in (
            run_hash(asked),
            run_hash(compose(tiny("encoder", "method=opf", *DYNAMIC))),
        )


_NEW_KEYS = ("gauge", "round_epochs", "keep_optimizer_state")


def test_dynamic_run_resumed_inside_its_second_round_ends_where_an_unbroken_run_does(
    tiny, tmp_path, monkeypatch
):
    """The checkpoint of step 6 lies in round 1. On resume the rounds are re-attached before the weights are
    restored, so round 1's choice must come from the scores saved when it began, not from pretrained weights.
    T5: each family has 4 matrices (encoder and decoder), so round 1 really chooses (1 of the 3 left)."""
    extra = (*DYNAMIC, "trainer.save_every=3", "trainer.eval_every=2", "method.lr=0.01")
    reference = compose(
        tiny("encoder_decoder", "method=opf", *extra, f"paths.runs_root={tmp_path}/reference")
    )
    run(reference)
    crashing = compose(tiny("encoder_decoder", "method=opf", *extra, f"paths.runs_root={tmp_path}/crashing"))
    crash_after_second_save(crashing, monkeypatch)
    result = run(crashing)
    assert "resumed from step-00000006" in (run_dir(crashing) / "train.log").read_text()
    _assert_same_run(RunDir(run_dir(reference)), RunDir(run_dir(crashing)))
    assert result["opf"] == RunDir(run_dir(reference)).result()["opf"]


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        (("method.top_n=3",), "method.top_n=3", "exceeds the 2 q matrices of tiny-bert"),
        (
            ("method.strategy=dynamic", "method.top_n=3", "method.split_num=2"),
            "method.split_num=2",
            "must divide",
        ),
        (
            ("method.shapes.attention={rows:[4,4],cols:[4,4]}",),
            "method.shapes.attention",
            "must multiply to the 32 x 32 matrices",
        ),
    ],
)
def test_impossible_settings_are_one_line_before_anything_runs(tiny, overrides, key, words):
    cfg = compose(tiny("encoder", "method=opf", *overrides))
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert str(err.value).startswith(key) and words in str(err.value) and "\n" not in str(err.value)
    assert not run_dir(cfg).exists()


@pytest.mark.parametrize("strategy", [(), DYNAMIC])
@pytest.mark.parametrize(
    "frozen",
    [("method.train_central=false",), ("method.train_central=false", "method.train_aux=false")],
)
def test_frozen_mpo_tensors_finish_and_save_the_matrix_they_contract_to(tiny, strategy, frozen):
    """The seed's own runs never stepped their MPO tensors: train_central/train_aux false finish COMPLETED,
    and the saved dense matrix of a layer whose tensors all stayed frozen is its pretrained matrix (the
    frozen tensors are read from the module; they crashed saved_state with a KeyError before)."""
    # both parts frozen is the seed's run: the rest of the backbone trains (nothing would, else)
    backbone = () if len(frozen) == 2 else ("method.train_backbone=false",)
    cfg, result = _run(tiny, "method.top_n=1", *backbone, *strategy, *frozen)
    assert RunDir(run_dir(cfg)).status()["state"] == "COMPLETED"
    saved = load_file(run_dir(cfg) / "pet_weights.safetensors")
    if len(frozen) == 2:
        pretrained = load_pretrained(resolve_run(cfg).backbone, 5)[0].state_dict()
        # a matrix decomposed in a later round trained densely before it: round 0's kept the pretrained one
        for entry in [e for e in result["opf"]["chosen"] if e["round"] == 0]:
            key = f"{entry['name']}.weight"
            torch.testing.assert_close(saved[key], pretrained[key], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("strategy", [(), DYNAMIC])
def test_opf_trains_under_bf16_autocast(tiny, strategy):
    """contract() under bf16 autocast mixed a bf16 tensordot result with fp32 tensors (a dtype error on
    every bf16 run, and so on every default GPU run under precision=auto)."""
    cfg, _ = _run(tiny, "method.top_n=1", "trainer.precision=bf16", *strategy)
    assert RunDir(run_dir(cfg)).status()["state"] == "COMPLETED"
