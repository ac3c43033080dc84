"""`petsweep export`: a run's model with its method merged, as a plain transformers model that computes
what the run's model computes; methods whose modules a plain model cannot hold are refused in one line."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from petsweep.app import run
from petsweep.backbones import load_pretrained
from petsweep.checkpoint import load_trainable
from petsweep.config import compose, resolve_run
from petsweep.errors import ConfigError
from petsweep.export import export_merged
from petsweep.identity import run_dir
from petsweep.params import attach_method

MERGEABLE = [  # (family, method and its overrides): reparameterisations and in-place methods
    ("encoder", ("method=lora",)),
    ("encoder", ("method=ia3",)),
    ("encoder", ("method=compose", "method.members=[{name: lora}, {name: bitfit}]")),
    ("encoder", ("method=sequential", "method.members=[{name: lora}, {name: bitfit}]")),  # stages merged
    ("decoder", ("method=lora",)),  # GPT-2's fused Conv1D projection
    ("llama", ("method=ln",)),
]


@pytest.mark.parametrize(("arch", "method"), MERGEABLE)
def test_an_exported_model_computes_what_the_run_computes(tiny, tmp_path, arch, method):
    cfg = compose(tiny(arch, *method))
    run(cfg)
    out = export_merged(run_dir(cfg), tmp_path / "export")

    spec = resolve_run(cfg)
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    tuned = attach_method(model, spec, tokenizer=tokenizer)[0].model
    load_trainable(tuned, load_file(run_dir(cfg) / "pet_weights.safetensors"))
    auto = AutoModelForSequenceClassification if spec.backbone.family == "encoder" else AutoModelForCausalLM
    exported = auto.from_pretrained(out)
    batch = tokenizer(["a test sentence", "and another, longer one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected, got = tuned.eval()(**batch).logits, exported.eval()(**batch).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["adapter", "prompt", "prefix"])
def test_methods_a_plain_model_cannot_hold_are_refused_in_one_line(tiny, tmp_path, method):
    cfg = compose(tiny("encoder", f"method={method}"))
    run(cfg)
    with pytest.raises(
        ConfigError, match=f"method='{method}': adds parameters a plain bert model has no place"
    ):
        export_merged(run_dir(cfg), tmp_path / "export")
    out = run_cli("-m", "petsweep.cli", "export", str(run_dir(cfg)), "-o", str(tmp_path / "cli"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and not (tmp_path / "cli").exists()
