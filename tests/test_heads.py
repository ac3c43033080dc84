"""The mean-pooling encoder head: transformers' head's parameter names, padding-invariant, trainable."""

from __future__ import annotations

import json

import pytest
import torch

from petsweep.compose import compose
from petsweep.model.backbones import BackboneSpec, head_parameter_names, load_pretrained
from petsweep.model.resolve import resolve_run, run_dir
from petsweep.run.app import run


def _spec(tiny, pooling: str) -> BackboneSpec:
    return resolve_run(compose(tiny("encoder", f"backbone.pooling={pooling}"))).backbone


def test_mean_head_keeps_the_names_of_the_models_own_head(tiny):
    torch.manual_seed(0)
    pooled, _ = load_pretrained(_spec(tiny, "pooler"), 5)
    torch.manual_seed(0)
    mean, _ = load_pretrained(_spec(tiny, "mean"), 5)
    pooled_names = {n for n, _ in pooled.named_parameters()}
    mean_names = {n for n, _ in mean.named_parameters()}
    assert head_parameter_names(mean, _spec(tiny, "mean")) == {"classifier.weight", "classifier.bias"}
    assert mean_names == {n for n in pooled_names if ".pooler." not in n}  # same names, no pooler
    assert any(".pooler." in n for n in pooled_names)


def test_mean_pooling_ignores_padding(tiny):
    model, tokenizer = load_pretrained(_spec(tiny, "mean"), 3)
    model.eval()
    short = tokenizer(["a short text"], return_tensors="pt")
    padded = tokenizer(
        ["a short text", "a much longer text that forces padding of the first one"],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        alone = model(**short).logits[0]
        in_batch = model(**padded).logits[0]
    torch.testing.assert_close(alone, in_batch, rtol=1e-5, atol=1e-6)


# prefix: its keys and values lengthen the attention mask, not the encoder's output (it crashed the pooling)
@pytest.mark.parametrize("method", ["lora", "bitfit", "full", "prefix", "prompt"])
def test_mean_pooling_run_trains_and_records(tiny, method):
    cfg = compose(tiny("encoder", "backbone.pooling=mean", f"method={method}", "trainer.max_steps=6"))
    result = run(cfg)
    assert 0.0 <= result["score"] <= 1.0 and result["steps"] == 6
    assert result["head_params"] == 32 * 5 + 5
    if method == "full":  # every parameter of the backbone is trained, and nothing unused is counted
        assert result["pet_params"] == result["total_params"]
    history = [json.loads(line) for line in (run_dir(cfg) / "metrics.jsonl").read_text().splitlines()]
    assert all(row["train_loss"] == row["train_loss"] for row in history)  # finite, not NaN
