"""Generation: every method decodes with the same plain greedy search through its own forward
(petsweep/methods/layers/decoding.py), cached or not, whatever the batch, the world size or the model's
generation_config."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch
from test_method_contract import BATCHES, _padded, _spec

from petsweep.compose import compose
from petsweep.methods.layers.decoding import greedy_decode
from petsweep.model.backbones import load_pretrained
from petsweep.model.objectives import make_objective
from petsweep.model.params import attach_method
from petsweep.model.resolve import resolve_run, run_hash
from petsweep.spec.errors import ConfigError

ARCHS = ["encoder_decoder", "bart", "decoder", "bloom", "llama"]


def _model(tiny, arch, method, *extra):
    own = {
        "prompt": ["method.length=3"],
        "prefix": ["method.length=3"],
        "dept": ["method.length=3", "method.rank=2"],
    }
    extra = (*own.get(method, []), *extra)
    spec = _spec(tiny, arch, method, *extra)
    bare, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    model = attach_method(bare, spec, tokenizer=tokenizer)[0].model.eval()
    return spec, model, tokenizer, spec.backbone.family == "encoder_decoder"


def _greedy_forward(model, source: list[int], steps: int, encoder_decoder: bool) -> list[int]:
    """The tokens that `steps` greedy forwards over the whole text pick (no cache, no generate)."""
    source = torch.tensor([source])
    ids = torch.tensor([[model.config.decoder_start_token_id]]) if encoder_decoder else source
    with torch.no_grad():
        for _ in range(steps):
            logits = (
                model(input_ids=source, decoder_input_ids=ids).logits
                if encoder_decoder
                else model(input_ids=ids).logits
            )
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    return ids[0, 1:].tolist() if encoder_decoder else ids[0, source.shape[1] :].tolist()


@pytest.mark.parametrize("method", ["prompt", "prefix", "dept", "lora"])
def test_an_empty_decoder_row_decodes_from_bos_or_generates_nothing(tiny, method):
    """A row with no real token (all padding): a decoder with a BOS token decodes from it (what the
    greedy forward from [BOS] picks), one without generates padding; the other rows are untouched."""
    _, model, _, _ = _model(tiny, "decoder", method)
    input_ids, mask = _padded([[11, 12, 13], []], left=True)
    bos = model.config.bos_token_id
    assert bos is not None
    out = greedy_decode(model, input_ids, mask, encoder_decoder=False, max_new_tokens=3, eos_token_id=[])
    assert out[1, 3:].tolist() == _greedy_forward(model, [bos], 3, False)
    assert out[0, 3:].tolist() == _greedy_forward(model, [11, 12, 13], 3, False)
    model.config.bos_token_id = model.generation_config.bos_token_id = None
    out = greedy_decode(
        model, input_ids, mask, encoder_decoder=False, max_new_tokens=3, pad_token_id=0, eos_token_id=[]
    )
    assert out[1].tolist() == [0] * 6
    if method != "lora":  # the method's own generate() agrees
        assert model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=3).shape[1] >= 3


@pytest.mark.parametrize("method", ["prompt", "prefix", "dept"])
@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder"])
def test_synced_decoding_pads_after_eos_as_unsynced_decoding_stops(tiny, arch, method):
    """ZeRO-3 ranks keep stepping after a row's EOS; what they pick there is never kept: the output is the
    unsynced one, padding after EOS, so scores do not depend on the world size."""
    _, model, _, encoder_decoder = _model(tiny, arch, method)
    rows = [[11, 12, 13, 14], [21, 22, 23, 24]]
    input_ids, mask = _padded(rows, left=not encoder_decoder)
    free = greedy_decode(model, input_ids, mask, encoder_decoder=encoder_decoder, max_new_tokens=5)
    width = input_ids.shape[1] if not encoder_decoder else 1
    eos = int(free[0, width + 1])  # row 0's second token is its EOS from now on
    kwargs = dict(encoder_decoder=encoder_decoder, max_new_tokens=5, pad_token_id=0, eos_token_id=eos)
    unsynced = greedy_decode(model, input_ids, mask, **kwargs)
    synced = greedy_decode(model, input_ids, mask, synced_gpus=True, **kwargs)
    first = free[0, width:].tolist().index(eos)
    assert synced[0, width + first + 1 :].eq(0).all(), synced
    assert synced[:, : unsynced.shape[1]].tolist() == unsynced.tolist()
    assert synced[:, unsynced.shape[1] :].eq(0).all()
    generated = model.generate(input_ids=input_ids, attention_mask=mask, synced_gpus=True, **kwargs)
    assert generated.tolist() == synced.tolist()


def _generation_objective(spec, tokenizer, family):
    return make_objective(family, spec.task, SimpleNamespace(label_words=[]), tokenizer)


def test_lora_on_bart_decodes_plain_greedy_despite_the_models_generation_config(tiny):
    """BART's generation_config (beams, forced EOS, n-gram bans, a minimum length) used to reach LoRA through
    generate() but not prompt/prefix/DePT: now every method decodes the same plain greedy search."""
    extra = ("task.kind=generation", "task.target_max_length=6")
    spec, model, tokenizer, _ = _model(tiny, "bart", "lora", *extra)
    g = model.generation_config
    g.num_beams, g.no_repeat_ngram_size, g.min_length = 4, 2, 5
    g.forced_eos_token_id, g.forced_bos_token_id = model.config.eos_token_id, model.config.bos_token_id
    objective = _generation_objective(spec, tokenizer, "encoder_decoder")
    sources = [[101, 11, 12, 13, 102], [101, 21, 22, 102]]
    got = objective.predict(model, [{"source": s} for s in sources], 2, "cpu")
    want = [tokenizer.decode(_greedy_forward(model, s, 6, True), skip_special_tokens=True) for s in sources]
    assert got == [w.strip() for w in want]
    assert spec.task.decoding == "greedy"
    old = _model(tiny, "bart", "lora", *extra, "task.decoding=model_default")
    assert old[0].task.decoding == "model_default"


def test_task_decoding_counts_for_generation_tasks_only(tiny):
    """New generation runs get new ids; old records (the model's generate) keep theirs; classification ids
    (the default job's) do not move."""
    assert run_hash(compose([]))[:12] == "9deb1d1591df"
    assert run_hash(compose(["task.decoding=model_default"]))[:12] == "9deb1d1591df"
    assert run_hash(compose(["task=samsum", "task.decoding=model_default"]))[:12] == "6fc8495e32b3"  # HEAD's
    assert run_hash(compose(["task=samsum"])) != run_hash(
        compose(["task=samsum", "task.decoding=model_default"])
    )
    with pytest.raises(ConfigError, match="task.decoding"):
        resolve_run(compose(["task=samsum", "task.decoding=beam"]))


@pytest.mark.parametrize("order", [("prefix", "dept"), ("dept", "prefix")])
@pytest.mark.parametrize("arch", ["decoder", "llama"])
def test_compose_prefix_and_dept_in_either_order(tiny, arch, order):
    """The prefix pre-hook lengthens the mask before DePT reads its token positions when listed first: both
    orders run, and each row generates what its own greedy forward picks."""
    members = ", ".join(f"{{name: {m}, length: 3{', rank: 2' if m == 'dept' else ''}}}" for m in order)
    spec = _spec(tiny, arch, "compose", f"method.members=[{members}]")
    bare, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    model = attach_method(bare, spec, tokenizer=tokenizer)[0].model.eval()
    rows, _ = BATCHES["padded"]
    input_ids, mask = _padded(rows, left=True)
    with torch.no_grad():
        dept = model.soft_prompt.offset
        dept.lora_embedding_B.normal_()  # a nonzero offset: positions matter
        out = greedy_decode(model, input_ids, mask, encoder_decoder=False, max_new_tokens=3, eos_token_id=[])
    for i, row in enumerate(rows):
        assert out[i, input_ids.shape[1] :].tolist() == _greedy_forward(model, row, 3, False)


@pytest.mark.parametrize("order", [("prefix", "dept"), ("dept", "prefix")])
def test_compose_prefix_and_dept_on_an_encoder_in_either_order(tiny, order):
    """On an encoder the prefix lengthens the mask as well: DePT reads its positions from the tokens' columns,
    so both orders give the same outputs (the members' parameters copied across)."""
    outputs = []
    for members_order in (order, order[::-1]):
        members = ", ".join(
            f"{{name: {m}, length: 3{', rank: 2' if m == 'dept' else ''}}}" for m in members_order
        )
        spec = _spec(tiny, "encoder", "compose", f"method.members=[{members}]")
        bare, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
        torch.manual_seed(0)
        attached = attach_method(bare, spec, tokenizer=tokenizer)[0]
        model = attached.model.eval()
        with torch.no_grad():
            for _, param in sorted(model.named_parameters()):
                if param.requires_grad:
                    param.copy_(torch.linspace(-1, 1, param.numel()).view_as(param))
            input_ids, mask = _padded([[101, 11, 12, 13, 102], [101, 21, 102]], left=False)
            outputs.append(model(input_ids=input_ids, attention_mask=mask).logits)
    torch.testing.assert_close(outputs[0], outputs[1])


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder"])
def test_zero_new_tokens_means_zero(tiny, arch):
    _, model, _, encoder_decoder = _model(tiny, arch, "prompt")
    input_ids, mask = _padded([[11, 12, 13]], left=False)
    out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=0)
    assert out.shape[1] == (1 if encoder_decoder else 3)
    with pytest.raises(ConfigError, match="task.target_max_length"):
        resolve_run(compose(tiny(arch, "task.target_max_length=0")))


@pytest.mark.parametrize("method", ["prompt", "prefix", "dept", "lora"])
@pytest.mark.parametrize("arch", ARCHS)
def test_cached_decoding_equals_the_no_cache_forward(tiny, arch, method):
    """The cache changes nothing: identical tokens, logits within 1e-5, on every batch layout."""
    _, model, _, encoder_decoder = _model(tiny, arch, method)
    if method == "dept":
        with torch.no_grad():
            model.soft_prompt.offset.lora_embedding_B.normal_()
    for rows, pad_left in BATCHES.values():
        input_ids, mask = _padded(rows, left=pad_left and not encoder_decoder)
        runs = []
        for cache in (True, False):
            scores = []
            out = greedy_decode(
                model,
                input_ids,
                mask,
                encoder_decoder=encoder_decoder,
                max_new_tokens=6,
                eos_token_id=[],
                cache=cache,
                scores=scores,
            )
            runs.append((out, scores))
        (cached, a), (plain, b) = runs
        assert cached.tolist() == plain.tolist()
        for row_a, row_b in zip(a, b):
            torch.testing.assert_close(torch.stack(row_a), torch.stack(row_b), atol=1e-5, rtol=1e-5)


def test_cached_decoding_is_faster_on_a_decoder(tiny):
    """The point of the cache: 24 tokens of a tiny GPT-2 prompt model, cached vs recomputed."""
    torch.set_num_threads(1)
    _, model, _, _ = _model(tiny, "decoder", "prompt")
    input_ids, mask = _padded([[11, 12, 13, 14, 15, 16, 17, 18]] * 4, left=True)
    times = {}
    for cache in (False, True):
        start = time.perf_counter()
        greedy_decode(
            model, input_ids, mask, encoder_decoder=False, max_new_tokens=24, eos_token_id=[], cache=cache
        )
        times[cache] = time.perf_counter() - start
    assert times[True] < times[False], times


@pytest.mark.parametrize("arch", ["decoder", "bart"])
def test_a_lora_generation_run_completes_on_the_greedy_path(tiny, tmp_path, arch):
    """A whole run on a generation task with LoRA (no hooks of its own), decoded by petsweep's greedy path."""
    from petsweep.model.resolve import run_dir
    from petsweep.records.status import COMPLETED, RunDir
    from petsweep.run.app import run

    for split, numbers in (("train", range(40)), ("test", range(40, 60))):
        (tmp_path / f"qa_{split}.jsonl").write_text(
            "".join(f'{{"inputs": "question {i}", "outputs": "answer {i % 3}"}}\n' for i in numbers)
        )
    cfg = compose(
        tiny(
            arch,
            "method=lora",
            "task=local",
            "task.kind=generation",
            f"task.files.train={tmp_path}/qa_train.jsonl",
            f"task.files.test={tmp_path}/qa_test.jsonl",
            "task.metric=exact_match",
            "task.target_max_length=4",
        )
    )
    result = run(cfg)
    assert RunDir(run_dir(cfg)).state() == COMPLETED and "exact_match" in result["metrics"]
