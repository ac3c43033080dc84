"""The packaged pretrained models, end to end through `python run.py` (the user's command)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import run_cli

from petsweep.cli import count

# all-MiniLM-L6-v2 as petsweep runs it: mean pooling, so the published 22,713,216 less its unused pooler
MINILM_L6 = 22_713_216 - (384 * 384 + 384)
QUICK = [
    "trainer.max_steps=4",
    "trainer.eval_every=2",
    "trainer.save_every=2",
    "task.dev_size=16",
    "task.test_size=32",
    "task.train_eval_size=16",
]


@pytest.mark.slow
def test_default_minilm_run_few_steps(tmp_path):
    out = run_cli("run.py", f"paths.runs_root={tmp_path}", *QUICK)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"accuracy \d\.\d{4} on test\s+\(random guess 0\.\d{4}\)", out.stdout)
    [record] = tmp_path.glob("single/minilm-l6-lora-bbc_news-s0-*/result.json")
    result = json.loads(record.read_text())
    assert result["total_params"] == MINILM_L6 and result["pet_params"] == 73_728
    assert result["trainable_params"] == 73_728 + 384 * 5 + 5
    assert str(record) in out.stdout
    again = run_cli("run.py", f"paths.runs_root={tmp_path}", *QUICK)
    assert "already COMPLETED" in again.stdout and json.loads(record.read_text()) == result


@pytest.mark.slow
def test_cut_minilm_loads_first_layers(tmp_path):
    out = run_cli("run.py", "backbone=minilm-l2", "method=bitfit", f"paths.runs_root={tmp_path}", *QUICK)
    assert out.returncode == 0, out.stderr[-3000:]
    [record] = tmp_path.glob("single/minilm-l2-bitfit-*/result.json")
    loaded = json.loads(record.read_text())
    meta = count(["backbone=minilm-l2", "method=bitfit"])  # from the YAML dimensions, no weights
    assert loaded["total_params"] == meta["total_params"] == MINILM_L6 - 4 * 1_774_464  # 4 of 6 layers cut
    assert loaded["pet_params"] == meta["pet_params"]


@pytest.mark.slow
def test_smollm2_decoder_from_packaged_gguf(tmp_path):
    out = run_cli(
        "run.py",
        "backbone=smollm2-135m",
        "task.max_length=24",
        "trainer.batch_size=2",
        "trainer.eval_batch_size=8",
        f"paths.runs_root={tmp_path}",
        *QUICK[:2],
        "task.dev_size=4",
        "task.test_size=8",
        "task.train_eval_size=4",
        "trainer.save_every=100",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    [record] = tmp_path.glob("single/smollm2-135m-lora-bbc_news-s0-*/result.json")
    result = json.loads(record.read_text())
    assert result["total_params"] == 134_515_008 and result["pet_params"] == 460_800
    assert result["trainable_params"] == 460_800  # label scoring uses the LM head: no new head
