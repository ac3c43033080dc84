"""DePT: count equal to prompt tuning's, the offset by token position, two learning rates, transfer."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from petsweep.compose import compose
from petsweep.model.backbones import load_pretrained
from petsweep.model.params import attach_method, check_on_meta
from petsweep.model.resolve import resolve_run, run_dir, semantic_config
from petsweep.run.app import run
from petsweep.spec.errors import ConfigError


def _count(*overrides: str) -> int:
    return check_on_meta(resolve_run(compose(["backbone=t5-base", "task=rte", *overrides]))).pet_params


@pytest.mark.parametrize(
    ("length", "rank", "s"), [(60, 30, 256), (80, 15, 256), (40, 45, 256), (60, 24, 512)]
)
def test_count_equals_prompt_tuning_with_100_vectors_on_t5_base(length, rank, s):
    """|DePT| = m d + r (s + d) = 76,800 = |PT(100)| at the seed's (m, r, s) pairs (spec 3.2)."""
    dept = (f"method.length={length}", f"method.rank={rank}", f"task.max_length={s}")
    assert _count("method=dept", *dept) == _count("method=prompt", "method.length=100") == 76_800
    counts = check_on_meta(resolve_run(compose(["backbone=t5-base", "task=rte", "method=dept", *dept])))
    assert any(f"s = task.max_length = {s}" in note for note in counts.count_notes)


def _attached(tiny, arch: str, *extra: str):
    spec = resolve_run(compose(tiny(arch, "method=dept", "method.length=3", *extra)))
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, _ = attach_method(model, spec, tokenizer=tokenizer)
    offset = attached.model.soft_prompt.offset
    with torch.no_grad():  # a trained pair: B is zero at the start, which would hide any position error
        offset.lora_embedding_B.normal_(0, 0.5)
    return spec, attached.model.eval(), offset


@pytest.mark.parametrize("arch", ["encoder", "encoder_decoder"])
def test_the_offset_is_the_seeds_padded_to_s_computation_on_every_real_token(tiny, arch):
    """petsweep pads to the batch's longest input; the seed pads to s and adds all of A B. Same outputs."""
    spec, model, offset = _attached(tiny, arch)
    s = spec.task.max_length
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])
    padded_ids = torch.cat([ids, ids.new_zeros(2, s - ids.shape[1])], 1)
    padded_mask = torch.cat([mask, mask.new_zeros(2, s - ids.shape[1])], 1)
    embeds = model.get_input_embeddings()(padded_ids) + offset.scale * (
        offset.lora_embedding_A @ offset.lora_embedding_B
    )
    prompt = model.soft_prompt.embedding.expand(2, -1, -1)
    seed_inputs = dict(
        inputs_embeds=torch.cat([prompt, embeds], 1),
        attention_mask=torch.cat([torch.ones(2, 3, dtype=torch.long), padded_mask], 1),
    )
    ours = dict(input_ids=ids, attention_mask=mask)
    if arch == "encoder_decoder":
        decoder = torch.tensor([[0, 4], [0, 4]])
        seed_inputs["decoder_input_ids"] = ours["decoder_input_ids"] = decoder
    with torch.no_grad():
        hooks = model._forward_pre_hooks.copy()
        model._forward_pre_hooks.clear()  # the bare model, fed as the seed feeds it
        expected = model(**seed_inputs).logits
        model._forward_pre_hooks.update(hooks)
        got = model(**ours).logits
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder", "llama"])
def test_generate_continues_what_the_forward_predicts_with_a_trained_offset(tiny, arch):
    """Generation steps after the first embed their new token with its own row of A B, found from the mask;
    left padding does not shift the rows: greedy steps through forward() give generate()'s tokens."""
    spec, model, _ = _attached(tiny, arch)
    encoder_decoder = spec.backbone.family == "encoder_decoder"
    model.generation_config = GenerationConfig(decoder_start_token_id=model.config.decoder_start_token_id)
    source = torch.tensor([[0, 0, 11, 12, 13, 14, 15]])  # left padding, as decoders generate
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        out = model.generate(
            input_ids=source,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=4,
            min_new_tokens=4,
            pad_token_id=0,
        )
        start = model.config.decoder_start_token_id
        ids = torch.tensor([[start]]) if encoder_decoder else source[:, 2:]
        for _ in range(4):
            logits = (
                model(input_ids=source[:, 2:], decoder_input_ids=ids).logits
                if encoder_decoder
                else model(input_ids=ids).logits
            )
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    generated = out[:, -4:]
    assert generated.tolist() == ids[:, -4:].tolist()


def test_prompt_and_pair_train_at_their_own_learning_rates(tiny):
    spec = resolve_run(compose(tiny("encoder", "method=dept", "method.lr=0.3", "method.lowrank_lr=0.002")))
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, counts = attach_method(model, spec, tokenizer=tokenizer)
    lrs = {g.name: (g.lr, sum(p.numel() for p in g.params)) for g in attached.groups}
    d, s = model.config.hidden_size, spec.task.max_length
    assert lrs["method"] == (0.3, 60 * d) and lrs["lowrank"] == (0.002, 30 * (s + d))
    prompt = attached.model.soft_prompt.embedding
    vocabulary = model.get_input_embeddings().weight
    ids = tokenizer("Classify this text is postive or not:")["input_ids"]  # the seed's: special tokens too
    rows = (ids * 60)[:60]
    assert ids != tokenizer("Classify this text is postive or not:", add_special_tokens=False)["input_ids"]
    assert torch.equal(prompt, vocabulary[torch.tensor(rows)])  # the seed's text init, repeated to m


def test_the_seeds_defaults_low_rank_lr_is_the_prompts_and_old_records_keep_their_ids(tiny):
    """The seed's --lora_embedding_lr defaults to None: A and B train at --learning_rate. Text init without
    special tokens (the earlier behaviour) stays available and keeps old records' ids (ADDED_DEFAULTS)."""
    spec = resolve_run(compose(tiny("encoder", "method=dept", "method.lr=0.3")))
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, _ = attach_method(model, spec, tokenizer=tokenizer)
    assert {g.name: g.lr for g in attached.groups} == {"method": 0.3, "lowrank": 0.3, "head": 2e-3}
    old = resolve_run(compose(tiny("encoder", "method=dept", "method.init_special_tokens=false")))
    model, tokenizer = load_pretrained(old.backbone, old.task.num_labels)
    attached, _ = attach_method(model, old, tokenizer=tokenizer)
    words = tokenizer("Classify this text is postive or not:", add_special_tokens=False)["input_ids"]
    vocabulary = model.get_input_embeddings().weight
    assert torch.equal(attached.model.soft_prompt.embedding[0], vocabulary[words[0]])
    cfg = compose(tiny("encoder", "method=dept", "method.init_special_tokens=false"))
    plain_cfg = compose(tiny("encoder", "method=dept"))
    without = {k: v for k, v in semantic_config(cfg)["method"].items()}
    assert "init_special_tokens" not in without  # hashed as before the key existed
    assert semantic_config(plain_cfg)["method"]["init_special_tokens"] is True
    assert not attached.model.soft_prompt.offset.lora_embedding_B.any()  # starts as prompt tuning


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        (("method.rank=100", "task.max_length=32"), "method.rank=100", "exceeds min(s, d) = min(32, "),
        (("method.length=500", "task.max_length=32"), "method.length=500", "positions"),
    ],
)
def test_impossible_shapes_are_one_line_before_anything_runs(tiny, overrides, key, words):
    cfg = compose(tiny("encoder", "method=dept", *overrides))
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert str(err.value).startswith(key) and words in str(err.value) and "\n" not in str(err.value)
    assert not run_dir(cfg).exists()


@pytest.mark.parametrize("source", ["prompt", "dept"])
def test_transfer_from_a_trained_prompt_or_dept_run(tiny, source):
    """The seed's transfer setting: a DePT run starts from a trained prompt-tuning run's prompt (its B is
    zero, so it computes what the source computed) or from a DePT run's prompt, A and B: scored without
    training, either reproduces its source's test score; trained on (few-shot), it completes."""
    first = run(compose(tiny("encoder", f"method={source}", "method.length=60")))
    start = ("method=dept", f"method.init_from={first['run_id'][:12]}")
    scored = run(compose(tiny("encoder", *start, "trainer.eval_only=true")))
    assert scored["init_from"]["run_id"] == first["run_id"]
    assert scored["init_from"]["tensors"] == (3 if source == "prompt" else 5)  # prompt (+ A, B), head W, b
    assert scored["score"] == first["score"] and scored["metrics"] == first["metrics"]
    trained = run(compose(tiny("encoder", *start, "seed=1", "task.k_shot=4")))
    assert trained["steps"] == 6 and trained["init_from"]["run_id"] == first["run_id"]


def test_adamw_eps_is_the_seeds_and_old_records_keep_their_ids(tiny):
    """The seed builds transformers.AdamW (eps 1e-6); petsweep's torch AdamW defaults to 1e-8. DePT declares
    method.adam_eps=1e-6, every optimizer group (prompt, pair, head) uses it; other methods keep 1e-8, and the
    ADDED_DEFAULT 1e-8 keeps old DePT records' and every other method's ids."""
    from petsweep.train.loop import build_optimizer

    for method, eps in (("dept", 1e-6), ("prompt", 1e-8), ("lora", 1e-8)):
        spec = resolve_run(compose(tiny("encoder", f"method={method}")))
        model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
        attached, _ = attach_method(model, spec, tokenizer=tokenizer)
        optimizer = build_optimizer(attached.groups, spec.trainer)
        assert {g["eps"] for g in optimizer.param_groups} == {eps}, method
    new = semantic_config(compose(tiny("encoder", "method=dept")))["method"]
    old = semantic_config(compose(tiny("encoder", "method=dept", "method.adam_eps=1e-8")))["method"]
    assert new["adam_eps"] == 1e-6 and "adam_eps" not in old
    assert "adam_eps" not in semantic_config(compose(tiny("encoder", "method=lora")))["method"]


def test_the_glue_preset_runs_the_seeds_settings(tmp_path):
    """ZhengxiangShi/DePT's GLUE script and checkpoints: m 60, r 30, s 256, batch 32, 40k steps, 500 warmup,
    linear, clipping 1.0, weight decay 0 (its own AdamW), eps 1e-6, fp32, HF's seed 42, lowrank lr grid."""
    from launchers.expand import expand
    from petsweep.cli import sweep_arguments

    arguments, zips = sweep_arguments(["+sweep=dept_glue", f"paths.runs_root={tmp_path}"])
    runs = [compose(run) for run in expand(arguments, zips)]
    assert len(runs) == 7 * 2 * 3
    cfg, trainer = runs[0], runs[0].trainer
    assert (cfg.seed, cfg.backbone.name, cfg.task.max_length) == (42, "t5-base", 256)
    assert (cfg.method.length, cfg.method.rank, cfg.method.adam_eps, cfg.method.init_special_tokens) == (
        60,
        30,
        1e-6,
        True,
    )
    assert (trainer.batch_size, trainer.max_steps, round(trainer.warmup_ratio * trainer.max_steps)) == (
        32,
        40000,
        500,
    )
    assert (trainer.schedule, trainer.max_grad_norm, trainer.weight_decay, trainer.precision) == (
        "linear",
        1.0,
        0.0,
        "fp32",
    )
    assert {(r.method.lr, r.method.lowrank_lr) for r in runs} == {
        (a, b) for a in (0.3, 0.4) for b in (5e-3, 0.3, 5e-4)
    }
