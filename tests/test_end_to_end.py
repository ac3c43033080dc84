"""Tiny end-to-end runs for each backbone family, through compose -> app.run -> result.json."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from petsweep.compose import compose
from petsweep.model.resolve import run_dir
from petsweep.records.record import RunRecord
from petsweep.records.status import COMPLETED, RunDir
from petsweep.run.app import run
from petsweep.spec.errors import ConfigError

CASES = [
    (f, m)
    for f in ("encoder", "encoder_decoder", "decoder")
    for m in ("lora", "full", "bitfit")
    if (f, m) != ("encoder_decoder", "bitfit")
]  # T5 has no biases: see test_bitfit_needs_biases


@pytest.mark.parametrize(("family", "method"), CASES)
def test_family_method_runs_and_records(tiny, family, method):
    cfg = compose(tiny(family, f"method={method}"))
    result = run(cfg)
    record = RunDir(run_dir(cfg))
    assert record.state() == COMPLETED
    assert set(result) == set(RunRecord.keys())  # result.json holds exactly the record's fields
    assert json.loads(record.result_file.read_text())["score"] == result["score"]
    assert 0.0 <= result["score"] <= 1.0 and result["steps"] == 6
    assert result["trainable_params"] == result["pet_params"] + (
        result["head_params"] if family == "encoder" else 0
    )
    saved = load_file(record.path / "pet_weights.safetensors")
    assert sum(t.numel() for t in saved.values()) == result["trainable_params"]
    rows = [json.loads(line) for line in record.metrics_file.read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6] and "dev_accuracy" in rows[0]
    for name in ("config.yaml", "provenance.json", "train.log"):
        assert (record.path / name).exists()


def test_completed_run_is_not_retrained(tiny, capsys):
    cfg = compose(tiny("encoder"))
    first = run(cfg)
    mtime = RunDir(run_dir(cfg)).result_file.stat().st_mtime_ns
    again = run(cfg)
    assert again == first
    assert RunDir(run_dir(cfg)).result_file.stat().st_mtime_ns == mtime
    assert "already COMPLETED" in capsys.readouterr().out


def test_generation_task_on_decoder(tiny, tmp_path):
    for split, numbers in (("train", range(40)), ("test", range(40, 60))):
        (tmp_path / f"qa_{split}.jsonl").write_text(
            "".join(
                json.dumps({"inputs": f"question {i}", "outputs": f"answer {i % 3}"}) + "\n" for i in numbers
            )
        )
    overrides = tiny(
        "decoder",
        "task=local",
        f"task.files.train={tmp_path}/qa_train.jsonl",
        f"task.files.test={tmp_path}/qa_test.jsonl",
        "task.kind=generation",
        "task.metric=exact_match",
        "task.metrics=[token_f1]",
    )
    result = run(compose(overrides))
    assert set(result["metrics"]) == {"exact_match", "token_f1"}
    assert result["random_guess_score"] >= 0.0


def test_seed_changes_lora_init_and_same_seed_repeats(tiny, tmp_path):
    a = run(compose(tiny("encoder", "seed=1", f"paths.runs_root={tmp_path}/a")))
    b = run(compose(tiny("encoder", "seed=1", f"paths.runs_root={tmp_path}/b")))
    assert a["metrics"] == b["metrics"] and a["train_subset_metrics"] == b["train_subset_metrics"]
    wa = load_file(
        RunDir(run_dir(compose(tiny("encoder", "seed=1", f"paths.runs_root={tmp_path}/a")))).path
        / "pet_weights.safetensors"
    )
    wb = load_file(
        RunDir(run_dir(compose(tiny("encoder", "seed=1", f"paths.runs_root={tmp_path}/b")))).path
        / "pet_weights.safetensors"
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bitfit_needs_biases(tiny):
    cfg = compose(tiny("encoder_decoder", "method=bitfit"))
    with pytest.raises(ConfigError, match="no bias parameters"):
        run(cfg)
    assert not run_dir(cfg).exists()  # refused on the meta device, before any run dir was claimed
