"""The method contract, checked for every registered method on a tiny model of each family.

A method added to the registry is covered here without editing this file: its groups are the only trainable
parameters, the meta-device count equals the real one, the task head is never the method's, and after one
optimizer step every trainable tensor gets a gradient.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_NAMES, crash_after_second_save
from transformers import GenerationConfig

from petsweep.compose import compose
from petsweep.methods import METHODS
from petsweep.methods.base import PETMethod
from petsweep.model.backbones import build_on_meta, load_pretrained
from petsweep.model.objectives import ClassifierObjective, TextToTextObjective, make_objective
from petsweep.model.params import attach_method, check_on_meta
from petsweep.model.resolve import resolve_run, run_dir
from petsweep.records.status import COMPLETED, RunDir
from petsweep.run.app import run
from petsweep.run.transfer import evaluate_transfer
from petsweep.spec.errors import ConfigError
from petsweep.tasks import prepare_task

TASK_OVERRIDES = ("task.test_size=30", "task.max_length=32", "task.dev_size=20")  # the tiny runs' own
# every method on every architecture trains and scores: small dev and test splits (a decoder scores each label
# with a forward pass over its vocabulary: these runs were a quarter of CI)
TEST_SIZE = 12
SMALL_SPLITS = (
    f"task.test_size={TEST_SIZE}",
    "task.max_length=32",
    "task.dev_size=8",
    "task.train_eval_size=4",
)

# every method on BERT, T5, GPT-2, RoBERTa, BART, BLOOM and Llama
CASES = [(m, arch) for m in METHODS.names() for arch in TINY_NAMES]


def _spec(tiny, family, method, *extra):
    return resolve_run(compose(tiny(family, f"method={method}", *extra)))


def _attach(spec, model, tokenizer=None):
    """(attached, counts), or None where the method refuses the backbone with one clear line. A real model
    comes with its tokenizer, as in a run (methods initialised from text read it)."""
    try:
        return attach_method(model, spec, tokenizer=tokenizer)
    except ConfigError as err:
        assert "\n" not in str(err) and "method" in str(err)
        return None


def _trainable(model) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


@pytest.mark.parametrize(("method", "arch"), CASES)
def test_groups_are_the_trainable_parameters_and_meta_counts_are_real(tiny, method, arch):
    spec = _spec(tiny, arch, method)
    real = _attach(spec, *load_pretrained(spec.backbone, spec.task.num_labels))
    meta = _attach(_spec(tiny, arch, method), build_on_meta(spec.backbone, spec.task.num_labels))
    assert (real is None) == (meta is None)  # refused on the meta device exactly when refused for real
    if real is None:
        return
    (attached, counts), (_, meta_counts) = real, meta
    assert _trainable(attached.model) == {id(p) for g in attached.groups for p in g.params}
    assert counts.as_dict() == meta_counts.as_dict()
    assert counts.trainable_params == sum(p.numel() for p in attached.model.parameters() if p.requires_grad)
    names = [g.name for g in attached.groups]
    assert len(names) == len(set(names))  # stable, distinct names: optimizer state is keyed by them
    if spec.backbone.family == "encoder":
        assert names[-1] == "head" and counts.trainable_params == counts.pet_params + counts.head_params
    else:
        assert "head" not in names and counts.head_params == 0


@pytest.mark.parametrize("method", METHODS.names())
def test_the_head_is_the_frameworks_and_train_head_false_freezes_it(tiny, method):
    # head alone with train_head=false trains nothing: refused unless the run only evaluates
    extra = ("trainer.eval_only=true",) if method == "head" else ()
    spec = _spec(tiny, "encoder", method, "method.train_head=false", *extra)
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, counts = attach_method(model, spec, tokenizer=tokenizer)
    head = {n for n, p in attached.model.named_parameters() if n.startswith("classifier")}
    assert head and not any(p.requires_grad for n, p in attached.model.named_parameters() if n in head)
    assert counts.trainable_params == counts.pet_params


@pytest.mark.parametrize(("method", "arch"), CASES)
def test_every_trainable_tensor_gets_a_gradient_after_one_step(tiny, method, arch):
    """A tensor that never gets a gradient (a dead prompt half, a module no path reaches) fails here. The
    check runs on the second step, so methods whose update starts at zero (LoRA's B) are judged fairly."""
    spec = _spec(tiny, arch, method)
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    found = _attach(spec, model, tokenizer)
    if found is None:
        return
    attached, _ = found
    torch.manual_seed(0)
    data = prepare_task(spec.task, spec.seed)
    objective = make_objective(spec.backbone.family, spec.task, data, tokenizer)
    batch = objective.train_batch(objective.encode(data.train[:4]))
    params = [p for g in attached.groups for p in g.params]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    attached.model.train()
    for _ in range(2):
        optimizer.zero_grad()
        objective.loss(attached.model, batch).backward()
        optimizer.step()
    dead = [
        n
        for n, p in attached.model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))
    ]
    assert not dead, dead[:5]


def _recording_scores(monkeypatch) -> list[tuple[int, torch.Tensor]]:
    """Every objective's raw outputs from here on, as (examples, outputs): what its predictions come from."""
    seen = []
    for objective in (ClassifierObjective, TextToTextObjective):

        def scores(self, model, encoded, *args, _real=objective.scores):
            out = _real(self, model, encoded, *args)
            seen.append((len(encoded), out.clone()))
            return out

        monkeypatch.setattr(objective, "scores", scores)
    return seen


@pytest.mark.parametrize(("method", "arch"), CASES)
def test_each_method_completes_a_short_run_and_its_saved_weights_reproduce_it(
    tiny, monkeypatch, method, arch
):
    """Save -> load onto a fresh backbone -> the same outputs: the run's own test split, scored again from
    pet_weights.safetensors through `petsweep transfer`, gives the recorded score exactly and each example's
    raw outputs (logits, label log-probabilities) bit for bit: a score alone matches where a short run's
    model predicts one class, weights loaded or not (review Z F6)."""
    seen = _recording_scores(monkeypatch)
    cfg = compose(tiny(arch, f"method={method}", *SMALL_SPLITS))
    spec = resolve_run(cfg)
    try:
        check_on_meta(spec)
    except ConfigError:
        with pytest.raises(ConfigError):
            run(cfg)
        assert not run_dir(cfg).exists()  # refused before a run dir was claimed or a weight loaded
        return
    result = run(cfg)
    assert RunDir(run_dir(cfg)).state() == COMPLETED
    ran = [out for n, out in seen if n == TEST_SIZE]  # the run's test split is the only one of its size
    again = evaluate_transfer(run_dir(cfg), "bbc_news", SMALL_SPLITS[:3])
    assert again["score"] == result["score"] and again["metrics"] == result["metrics"]
    scored_again = [out for n, out in seen if n == TEST_SIZE][len(ran) :]
    assert len(ran) == len(scored_again) == 1
    if METHODS.get(method).saved_state is PETMethod.saved_state:  # saved as trained: the same bits
        assert torch.equal(ran[0], scored_again[0])
    else:  # saved in another form (OPF's MPOs contracted to dense matrices): the same up to rounding
        torch.testing.assert_close(ran[0], scored_again[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("method", "arch"), CASES)
def test_outputs_have_the_bare_models_shapes(tiny, method, arch):
    """Objectives and metrics never need to know the method: same logits shape as the bare model."""
    spec = _spec(tiny, arch, method)
    bare, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    data = prepare_task(spec.task, spec.seed)
    objective = make_objective(spec.backbone.family, spec.task, data, tokenizer)
    batch = objective.train_batch(objective.encode(data.train[:3]))
    with torch.no_grad():
        expected = bare.eval()(**batch).logits.shape
    found = _attach(spec, *load_pretrained(spec.backbone, spec.task.num_labels))
    if found is None:
        return
    with torch.no_grad():
        assert found[0].model.eval()(**batch).logits.shape == expected


@pytest.mark.parametrize("method", ["prompt", "prefix"])
@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder", "llama"])
def test_prompt_and_prefix_tuned_text_to_text_models_generate(tiny, tmp_path, arch, method):
    for split, numbers in (("train", range(40)), ("test", range(40, 60))):
        (tmp_path / f"qa_{split}.jsonl").write_text(
            "".join(f'{{"inputs": "question {i}", "outputs": "answer {i % 3}"}}\n' for i in numbers)
        )
    cfg = compose(
        tiny(
            arch,
            f"method={method}",
            "method.length=4",
            "task=local",
            "task.kind=generation",
            f"task.files.train={tmp_path}/qa_train.jsonl",
            f"task.files.test={tmp_path}/qa_test.jsonl",
            "task.metric=exact_match",
            "task.metrics=[token_f1]",
            "task.target_max_length=4",
        )
    )
    result = run(cfg)
    assert RunDir(run_dir(cfg)).state() == COMPLETED and set(result["metrics"]) == {"exact_match", "token_f1"}


@pytest.mark.parametrize("method", ["prompt", "prefix"])
@pytest.mark.parametrize("arch", ["encoder_decoder", "bart", "decoder", "bloom", "llama"])
def test_generate_continues_what_the_tuned_forward_predicts(tiny, arch, method):
    """The wrapped generate() and the hooked forward are one model: greedy decoding step by step through
    forward() gives the tokens generate() returns, in the bare model's output layout."""
    spec = _spec(tiny, arch, method, "method.length=3")
    attached, _ = attach_method(load_pretrained(spec.backbone, spec.task.num_labels)[0], spec)
    model = attached.model.eval()
    source = torch.tensor([[11, 12, 13, 14, 15]])
    encoder_decoder = spec.backbone.family == "encoder_decoder"
    # plain greedy search: no logits processors of a model's defaults (BART forces BOS/EOS, bans repeats)
    model.generation_config = GenerationConfig(decoder_start_token_id=model.config.decoder_start_token_id)
    with torch.no_grad():
        out = model.generate(
            input_ids=source,
            attention_mask=torch.ones_like(source),
            do_sample=False,
            max_new_tokens=4,
            min_new_tokens=4,
            pad_token_id=0,
        )
        start = model.config.decoder_start_token_id if encoder_decoder else None
        ids = torch.tensor([[start]]) if encoder_decoder else source
        for _ in range(4):
            logits = (
                model(input_ids=source, decoder_input_ids=ids).logits
                if encoder_decoder
                else model(input_ids=ids).logits
            )
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert out.tolist() == ids.tolist()


BATCHES = {  # (rows, pad on the left): unpadded rows of one length, a single row, rows of two lengths
    "equal": ([[11, 12, 13, 14], [21, 22, 23, 24]], False),
    "single": ([[11, 12, 13, 14, 15]], False),
    "padded": ([[11, 12, 13, 14, 15], [21, 22]], True),
}


def _padded(rows: list[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    fill = [[0] * (width - len(r)) for r in rows]
    ids = [f + r if left else r + f for f, r in zip(fill, rows)]
    mask = [[0] * len(f) + [1] * len(r) if left else [1] * len(r) + [0] * len(f) for f, r in zip(fill, rows)]
    return torch.tensor(ids), torch.tensor(mask)


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("method", ["prompt", "prefix", "dept"])
@pytest.mark.parametrize("arch", ["encoder_decoder", "bart", "decoder", "bloom", "llama"])
def test_each_row_generates_what_its_own_greedy_forward_predicts(tiny, arch, method, batch):
    """Unpadded, single-row and padded batches (left-padded for decoders, as evaluation pads them): every row
    generates the tokens its own greedy forward picks, whatever else is in the batch."""
    spec = _spec(tiny, arch, method, "method.length=3", *(["method.rank=2"] if method == "dept" else []))
    bare, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    model = attach_method(bare, spec, tokenizer=tokenizer)[0].model.eval()
    encoder_decoder = spec.backbone.family == "encoder_decoder"
    rows, pad_left = BATCHES[batch]
    input_ids, mask = _padded(rows, left=pad_left and not encoder_decoder)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=3, min_new_tokens=3)
        for i, row in enumerate(rows):
            source = torch.tensor([row])
            ids = torch.tensor([[model.config.decoder_start_token_id]]) if encoder_decoder else source
            for _ in range(3):
                logits = (
                    model(input_ids=source, decoder_input_ids=ids).logits
                    if encoder_decoder
                    else model(input_ids=ids).logits
                )
                ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
            new = ids[0, 1:] if encoder_decoder else ids[0, len(row) :]
            assert out[i, -3:].tolist() == new.tolist(), (i, out, ids)
            if not encoder_decoder:
                assert out[i, : input_ids.shape[1]].tolist() == input_ids[i].tolist()  # as the bare model


def test_generation_refuses_what_it_does_not_do(tiny):
    spec = _spec(tiny, "decoder", "prefix", "method.length=3")
    model = attach_method(load_pretrained(spec.backbone, spec.task.num_labels)[0], spec)[0].model
    with pytest.raises(ValueError, match="num_beams=4: greedy decoding"):
        model.generate(input_ids=torch.tensor([[11, 12]]), num_beams=4)


IDENTITY_AT_INIT = [  # methods whose update starts at zero: the model computes exactly what it did before
    ("lora", ()),
    ("ia3", ()),
    ("bitfit", ("method.add_biases=true",)),
]


@pytest.mark.parametrize(("method", "extra"), IDENTITY_AT_INIT)
@pytest.mark.parametrize("arch", ["encoder_decoder", "llama", "decoder"])
def test_identity_at_init_where_the_method_promises_it(tiny, method, extra, arch):
    spec = _spec(tiny, arch, method, *extra)
    bare, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    data = prepare_task(spec.task, spec.seed)
    objective = make_objective(spec.backbone.family, spec.task, data, tokenizer)
    batch = objective.train_batch(objective.encode(data.train[:3]))
    with torch.no_grad():
        expected = bare.eval()(**batch).logits
        attached, _ = attach_method(load_pretrained(spec.backbone, spec.task.num_labels)[0], spec)
        assert torch.equal(attached.model.eval()(**batch).logits, expected)


@pytest.mark.parametrize("arch", ["encoder_decoder", "llama"])
def test_bitfit_adds_biases_to_bias_free_backbones_on_request(tiny, arch):
    cfg = compose(tiny(arch, "method=bitfit", "method.add_biases=true"))
    result = run(cfg)
    assert RunDir(run_dir(cfg)).state() == COMPLETED and result["pet_params"] > 0
    # the added biases are rebuilt and loaded
    again = evaluate_transfer(run_dir(cfg), "bbc_news", TASK_OVERRIDES)
    assert again["score"] == result["score"]


@pytest.mark.parametrize("method", METHODS.names())
def test_each_method_resumed_after_a_crash_ends_where_an_unbroken_run_does(
    tiny, tmp_path, monkeypatch, method
):
    from test_resume import _assert_same_run

    extra = (f"method={method}", "trainer.max_steps=8", "trainer.eval_every=2", "trainer.save_every=2")
    reference = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/reference"))
    run(reference)
    crashing = compose(tiny("encoder", *extra, f"paths.runs_root={tmp_path}/crashing"))
    crash_after_second_save(crashing, monkeypatch)  # dies after the checkpoint of step 4
    run(crashing)
    assert "resumed from step-00000004" in (RunDir(run_dir(crashing)).path / "train.log").read_text()
    _assert_same_run(RunDir(run_dir(reference)), RunDir(run_dir(crashing)))


@pytest.mark.parametrize(("members", "outer"), [("[lora, ia3]", "ia3"), ("[ia3, lora]", "lora")])
def test_composition_attaches_members_in_the_order_given(tiny, members, outer):
    """Where two members wrap one module (LoRA and IA3 on v), the later one wraps the earlier: the order the
    user gives is the order of the computation (and outputs differ between orders once both are trained)."""
    spec = _spec(tiny, "encoder", "compose", f"method.members={members}")
    attached, _ = attach_method(load_pretrained(spec.backbone, spec.task.num_labels)[0], spec)
    value = attached.model.get_submodule("bert.encoder.layer.0.attention.self.value")
    assert type(value).__module__.split(".")[2] == outer  # peft.tuners.<ia3|lora>.layer
    first, second = members.strip("[]").split(", ")
    assert [g.name for g in attached.groups][:2] == [f"0.{first}", f"1.{second}"]
