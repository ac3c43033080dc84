"""Parameter counts from configs on the meta device, against the exact fixtures of pet_methods.md §5."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from petsweep.cli import count

FIXTURES = [  # (backbone, method, pet_params)
    ("bert-base", "lora", 294_912),
    ("bert-base", "bitfit", 102_912),
    ("bert-large", "lora", 786_432),
    ("bert-large", "bitfit", 272_384),
    ("t5-small", "lora", 196_608),
    ("t5-base", "lora", 589_824),
    ("t5-v1_1-small", "lora", 229_376),
    ("bloom-560m", "lora", 786_432),
    ("bloom-560m", "bitfit", 272_384),
]

PUBLISHED_TOTALS = {  # unique parameters; tied input/output embeddings counted once
    "bert-base": 109_482_240,
    "gpt2": 124_439_808,  # lm_head tied to wte
    "t5-base": 222_903_552,  # encoder/decoder embeddings and lm_head share one matrix
    "llama2-7b": 6_738_415_616,
    "smollm2-135m": 134_515_008,  # tied
    # T5 v1.1: encoder and decoder share the input embedding, lm_head is its own (transformers 5.x would tie it)
    "t5-v1_1-small": 76_961_152,
    "t5-v1_1-base": 247_577_856,
    "t5-v1_1-large": 783_150_080,
    "t5-v1_1-xl": 2_849_757_184,
    "t5-v1_1-xxl": 11_135_332_352,
}


@pytest.mark.parametrize(("backbone", "method", "expected"), FIXTURES)
def test_pet_param_fixtures(backbone, method, expected):
    task = "rte" if backbone.startswith("bert") else "bbc_news"
    assert count([f"backbone={backbone}", f"method={method}", f"task={task}"])["pet_params"] == expected


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
