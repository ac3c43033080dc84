"""`petsweep export`: a run's model with its method merged, as a plain transformers model that computes
what the run's model computes; methods whose modules a plain model cannot hold are refused in one line."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from petsweep.compose import compose
from petsweep.model.backbones import load_pretrained
from petsweep.model.params import attach_method
from petsweep.model.resolve import resolve_run, run_dir
from petsweep.run.app import run
from petsweep.run.export import export_merged
from petsweep.spec.errors import ConfigError
from petsweep.train.checkpoint import load_trainable

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


PEFT_EXPORTS = [  # (family, method and its overrides): every method peft can represent, on a head or an LM
    ("encoder", ("method=lora",)),  # the task head goes into peft's modules_to_save
    ("encoder", ("method=lora", "method.plus_one=2")),  # peft's rank_pattern
    ("encoder", ("method=ia3",)),
    ("encoder", ("method=ln",)),
    ("encoder", ("method=prompt", "method.length=4")),
    ("decoder", ("method=lora",)),
    ("decoder", ("method=prompt", "method.length=4")),
    ("decoder", ("method=prefix", "method.length=3")),
    (
        "decoder",
        ("method=prefix", "method.length=3", "method.projection=8"),
    ),  # the MLP collapsed, as peft saves
    ("encoder_decoder", ("method=lora",)),
]


@pytest.mark.parametrize(("arch", "method"), PEFT_EXPORTS)
def test_a_peft_export_loads_through_peft_to_the_run_outputs(tiny, tmp_path, arch, method):
    import json

    import transformers

    from petsweep import __version__
    from petsweep.run.export import BASE_FILE

    cfg = compose(tiny(arch, *method))
    run(cfg)
    out = tmp_path / "peft"
    cli = run_cli("-m", "petsweep.cli", "export", str(run_dir(cfg)), "--format", "peft", "-o", str(out))
    assert cli.returncode == 0 and f"as a peft adapter to {out}" in cli.stdout, cli.stderr
    assert {"adapter_config.json", "adapter_model.safetensors", BASE_FILE} <= {p.name for p in out.iterdir()}

    spec = resolve_run(cfg)
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    tuned = attach_method(model, spec, tokenizer=tokenizer)[0].model
    load_trainable(tuned, load_file(run_dir(cfg) / "pet_weights.safetensors"))
    base_info = json.loads((out / BASE_FILE).read_text())  # what a script reads to load the base
    # the base is named as the run configured it (its hub id), not by this machine's path, which is kept
    # apart as the local copy this export read
    config = json.loads((out / "adapter_config.json").read_text())
    hub_id = f"local/{spec.backbone.name}"
    assert config["base_model_name_or_path"] == base_info["pretrained_model_name_or_path"] == hub_id
    local_copy = base_info["local_copy"]
    assert local_copy == spec.backbone.path and local_copy not in (out / "adapter_config.json").read_text()
    base_class = getattr(transformers, base_info["class"])
    load_base = lambda: base_class.from_pretrained(local_copy, **base_info["kwargs"])  # noqa: E731
    # the task head is named once in modules_to_save (peft appended its "classifier", "score" to the list
    # petsweep gave it, twice for prompt tuning) and saved once
    head = ["classifier"] if arch == "encoder" else None
    assert config["modules_to_save"] == head
    saved = load_file(out / "adapter_model.safetensors")
    assert sorted(k.rpartition("classifier.")[2] for k in saved if "classifier" in k) == (
        ["bias", "weight"] if head else []
    )
    # the model card: what was trained, the run's id and score, petsweep's version, and how to load it; its
    # code, pointed at the local copy as it says, is what loads the adapter below
    card = (out / "README.md").read_text()
    result = json.loads((run_dir(cfg) / "result.json").read_text())
    for says in (
        f"# {spec.backbone.name} / {spec.method.config.name} / bbc_news (seed 0)",
        f"- Backbone: {spec.backbone.name}: {hub_id} (",
        f"- Run: id {run_dir(cfg).name[-12:]} (sweep single, seed 0, 6 steps)",
        f"- Score: accuracy {result['score']:.4f} on test",
        f"trained with {__version__}",
        "PeftModel.from_pretrained(base, ",
        f'pass its directory instead of "{hub_id}" (this export read it from `{local_copy}`)',
    ):
        assert says in card, (says, card)
    assert "More Information Needed" not in card  # peft's empty template
    code = card.split("```python\n")[1].split("```")[0]
    code = code.replace(f'"{hub_id}"', repr(local_copy)).replace('"path/to/this/dir"', repr(str(out)))
    scope = {}
    exec(code, scope)  # peft's own loader, nothing of petsweep's
    loaded = scope["model"]
    assert sum(".modules_to_save.default." in n for n, _ in loaded.named_parameters()) == (2 if head else 0)
    batch = dict(tokenizer(["a test sentence", "and another, longer one"], return_tensors="pt", padding=True))
    batch.pop("token_type_ids", None)
    if spec.backbone.family == "encoder_decoder":
        batch["decoder_input_ids"] = batch["input_ids"][:, :3]
    with torch.no_grad():
        expected, got = tuned.eval()(**batch).logits, loaded.eval()(**batch).logits
        bare = load_base().eval()(**batch).logits
    if "method=prompt" in method and arch == "decoder":  # peft's causal LM returns the prompt's positions too
        got = got[:, spec.method.config.length :]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(bare, expected, atol=1e-4)  # the adapter is what makes the difference


REFUSED_PEFT = [  # (family, method, what the one line says): no peft form, or none peft computes the run with
    (
        "encoder",
        "adapter",
        "has no peft form (peft has no Houlsby bottleneck adapter); --format peft exports",
    ),
    ("encoder", "bitfit", "has no peft form (peft has no bias-only tuner); --format peft exports lora, ia3"),
    ("encoder", "prefix", "peft's prefix on bert (encoder) fails: Model does not support past key values"),
    ("encoder_decoder", "prefix", "peft's prefix on t5 (encoder_decoder) fails: The size of tensor a"),
]


@pytest.mark.parametrize(("arch", "method", "says"), REFUSED_PEFT)
def test_runs_without_a_peft_form_are_refused_in_one_line_naming_why(tiny, tmp_path, arch, method, says):
    cfg = compose(
        tiny(arch, f"method={method}", "method.length=3")
        if method == "prefix"
        else tiny(arch, f"method={method}")
    )
    run(cfg)
    out = run_cli(
        "-m", "petsweep.cli", "export", str(run_dir(cfg)), "--format", "peft", "-o", str(tmp_path / "peft")
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and not (tmp_path / "peft").exists()
    assert f"method='{method}': {says}" in out.stderr
    assert "--format peft exports lora, ia3, prompt, prefix, ln" in out.stderr  # which methods can


@pytest.mark.parametrize(
    ("method", "says"),
    [
        (("method=apet", "apet.scale=10"), "method='apet': has no peft form (peft has no sparse-delta"),
        (("method=lora",), "backbone.pooling='mean': this head is petsweep's own"),  # its one refusal
    ],
)
def test_a_mean_pooled_run_is_refused_for_its_method_before_its_pooling(tiny, tmp_path, method, says):
    """An APET run on a mean-pooled backbone was told `only pooling=pooler runs export`; retrained with
    pooler pooling it met the real refusal, `no peft form`. The method is checked first."""
    cfg = compose(tiny("encoder", *method, "backbone.pooling=mean", "trainer.max_steps=2"))
    run(cfg)
    out = run_cli(
        "-m", "petsweep.cli", "export", str(run_dir(cfg)), "--format", "peft", "-o", str(tmp_path / "peft")
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and not (tmp_path / "peft").exists()
    assert says in out.stderr, out.stderr


def test_every_method_has_a_peft_form_or_a_reason_it_has_none():
    from petsweep.methods import METHODS
    from petsweep.run.export import NO_PEFT_FORM, PEFT_FORMS

    assert not set(PEFT_FORMS) & set(NO_PEFT_FORM)
    assert sorted({*PEFT_FORMS, *NO_PEFT_FORM}) == METHODS.names()
