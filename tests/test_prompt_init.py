"""Soft-prompt initialisation from a text: the prompt starts as the text's token embeddings, repeated."""

from __future__ import annotations

import pytest
import torch

from petsweep.compose import compose
from petsweep.model.backbones import load_pretrained
from petsweep.model.params import attach_method
from petsweep.model.resolve import resolve_run
from petsweep.spec.errors import ConfigError


@pytest.mark.parametrize("arch", ["encoder", "encoder_decoder", "decoder"])
def test_a_prompt_initialised_from_text_starts_as_its_tokens(tiny, arch):
    spec = resolve_run(
        compose(
            tiny(arch, "method=prompt", "method.length=7", "method.init=text", "method.init_text=news topic")
        )
    )
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, _ = attach_method(model, spec, tokenizer=tokenizer)
    ids = tokenizer("news topic", add_special_tokens=False)["input_ids"]
    expected = model.get_input_embeddings().weight[torch.tensor((ids * 7)[:7])]
    assert torch.equal(attached.model.soft_prompt.embedding, expected)


@pytest.mark.parametrize(
    "extra",
    [("method.init=text",), ("method.init_text=hello",)],  # a text without init=text is a mistake too
)
def test_text_initialisation_needs_exactly_a_text(tiny, extra):
    with pytest.raises(ConfigError, match="method.init_text"):
        resolve_run(compose(tiny("encoder", "method=prompt", *extra)))
