"""Parameter counts from configs on the meta device, against the exact fixtures of pet_methods.md §5."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from petsweep import CONF_DIR
from petsweep.cli import count
from petsweep.methods import METHODS
from petsweep.spec.errors import ConfigError

FIXTURES = [  # (backbone, method and its overrides, pet_params): pet_methods.md §4-5, methods_measured.md
    ("bert-base", "lora", 294_912),
    ("bert-base", "bitfit", 102_912),
    ("bert-base", "ln", 38_400),
    ("bert-base", "prompt", 76_800),
    ("bert-base", "last_layer", 7_087_872),
    ("bert-base", "ia3", 55_296),  # k, v, FFN: peft's own default would also catch attention.output.dense
    ("bert-base", "adapter", 903_744),  # Houlsby, bottleneck 24
    ("bert-base", "adapter method.variant=pfeiffer", 451_872),
    ("bert-base", "adapter method.bottleneck=64", 2_379_264),
    ("bert-base", "adapter method.bottleneck=64 method.variant=pfeiffer", 1_189_632),
    ("bert-large", "lora", 786_432),
    ("bert-large", "bitfit", 272_384),
    ("bert-large", "ln", 100_352),
    ("t5-small", "lora", 196_608),
    ("t5-small", "lora method.targets=[q,v,cross_q,cross_v]", 294_912),
    ("t5-small", "ln", 16_384),
    ("t5-small", "adapter", 602_688),
    ("t5-small", "prompt", 51_200),
    ("t5-base", "lora", 589_824),
    ("t5-base", "lora method.targets=[q,v,cross_q,cross_v]", 884_736),
    ("t5-base", "prompt", 76_800),
    ("t5-base", "ln", 47_616),
    ("t5-base", "ia3 method.targets=[k,v,cross_k,cross_v,ffn_out]", 129_024),  # peft's T5 default placement
    ("t5-base", "last_layer", 7_079_424),
    ("t5-base", "adapter", 1_807_488),
    ("t5-base", "adapter method.bottleneck=64", 4_758_528),
    ("t5-base", "adapter method.bottleneck=64 method.variant=pfeiffer", 2_379_264),
    ("t5-v1_1-small", "lora", 229_376),  # the APET table's budgets
    ("t5-v1_1-small", "adapter", 803_584),
    ("t5-v1_1-small", "prompt", 51_200),
    ("t5-v1_1-small", "bitfit method.add_biases=true", 121_216),  # OpenDelta's added biases = the APET table
    ("t5-v1_1-base", "bitfit method.add_biases=true", 270_208),
    ("bloom-560m", "lora", 786_432),
    ("bloom-560m", "bitfit", 272_384),
    ("bloom-560m", "adapter", 2_409_600),
    ("bloom-560m", "prompt", 102_400),
    ("bert-base", "compose", 294_912 + 102_912),  # LoRA + BitFit
    ("bert-base", "sequential method.members=[lora,bitfit]", 294_912 + 102_912),  # every stage
    ("bert-base", "prefix", 110_592),
    ("bert-base", "prefix method.projection=512", 9_853_952),  # peft's prefix_projection form
    ("t5-base", "prefix", 110_592),  # decoder self-attention, 12 layers
    ("llama2-7b", "prefix method.length=100", 26_214_400),
    ("llama2-7b", "prefix method.length=100 method.projection=512", 136_987_136),
]

PUBLISHED_TOTALS = {  # unique parameters; tied input/output embeddings counted once
    "bert-base": 109_482_240,
    "gpt2": 124_439_808,  # lm_head tied to wte
    "t5-base": 222_903_552,  # encoder/decoder embeddings and lm_head share one matrix
    "llama2-7b": 6_738_415_616,
    "smollm2-135m": 134_515_008,  # tied
    # T5 v1.1: encoder and decoder share the input embedding, lm_head is its own (transformers 5.x ties it)
    "t5-v1_1-small": 76_961_152,
    "t5-v1_1-base": 247_577_856,
    "t5-v1_1-large": 783_150_080,
    "t5-v1_1-xl": 2_849_757_184,
    "t5-v1_1-xxl": 11_135_332_352,
}


@pytest.mark.parametrize(("backbone", "method", "expected"), FIXTURES)
def test_pet_param_fixtures(backbone, method, expected):
    task = "rte" if backbone.startswith("bert") else "bbc_news"
    name, *overrides = method.split()
    assert (
        count([f"backbone={backbone}", f"method={name}", f"task={task}", *overrides])["pet_params"]
        == expected
    )


def test_a_fused_projection_is_named_in_the_count():
    notes = count(["backbone=bloom-560m", "method=lora"])["notes"]
    assert any("fused qkv" in note and note.startswith("q ") for note in notes)
    assert count(["backbone=bert-base", "method=lora", "task=rte"])["notes"] == []


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_counts_on_every_shipped_backbone(method):
    """From configs alone (meta device): a count, or one line where a method cannot take the backbone."""
    for backbone in sorted(p.stem for p in (CONF_DIR / "backbone").glob("*.yaml")):
        try:
            row = count([f"backbone={backbone}", f"method={method}"])
        except ConfigError as err:
            # BitFit, alone or composed, on a bias-free backbone; OPF on GPT-2's Conv1D projections; the head
            # alone where there is no task head petsweep adds (encoder-decoders, decoders)
            assert "\n" not in str(err) and any(
                s in str(err) for s in ("no bias", "Conv1D", "task head petsweep adds")
            ), (backbone, err)
            continue
        limit = (
            float("inf")
            if METHODS.get(method).overparameterises
            else row["total_params"] + row["head_params"]
        )
        if method == "head":  # the framework's head alone: the method adds and unfreezes nothing
            assert row["pet_params"] == 0 and 0 < row["trainable_params"] == row["head_params"], row
            continue
        assert 0 < row["pet_params"] <= limit, (backbone, row)


@pytest.mark.parametrize(("backbone", "expected"), PUBLISHED_TOTALS.items())
def test_totals_count_tied_weights_once(backbone, expected):
    assert count([f"backbone={backbone}", "method=full"])["total_params"] == expected


def test_trainable_includes_the_head_and_full_trains_everything():
    lora = count(["backbone=bert-base", "method=lora", "task=rte"])
    assert lora["head_params"] == 768 * 2 + 2
    assert lora["trainable_params"] == lora["pet_params"] + lora["head_params"]
    frozen_head = count(["backbone=bert-base", "method=lora", "task=rte", "method.train_head=false"])
    assert frozen_head["trainable_params"] == lora["pet_params"]
    full = count(["backbone=bert-base", "method=full", "task=rte"])
    assert full["pet_params"] == full["total_params"]


def test_minilm_counts_follow_its_pooling():
    published = count(["backbone=minilm-l6", "backbone.pooling=pooler", "method=full"])
    assert published["total_params"] == 22_713_216  # as published: BERT's [CLS] pooler included
    mean = count(["backbone=minilm-l6", "method=full"])  # its YAML default: mean pooling, no pooler to count
    assert mean["total_params"] == 22_713_216 - (384 * 384 + 384)
    assert mean["head_params"] == published["head_params"] == 384 * 5 + 5
    assert mean["trainable_params"] == mean["total_params"] + mean["head_params"]


def test_layer_cut_family_counts():
    totals = [count([f"backbone=minilm-l{k}", "method=full"])["total_params"] for k in (1, 2, 3, 6)]
    assert totals == sorted(totals) and totals[-1] == 22_713_216 - (384 * 384 + 384)
    assert totals[1] - totals[0] == totals[2] - totals[1]  # one transformer layer each


def test_count_cli_json_and_table():
    out = run_cli("-m", "petsweep.cli", "count", "--json", "backbone=bert-base", "method=lora")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert {"trainable_params", "pet_params", "total_params"} <= set(row) and row["pet_params"] == 294_912
    table = run_cli("-m", "petsweep.cli", "count", "backbone=bert-base", "method=bitfit")
    assert "102,912" in table.stdout
