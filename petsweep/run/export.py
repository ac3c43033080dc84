"""`petsweep export RUN_DIR -o DIR`: a finished run as a plain transformers model, its method merged.

The run's backbone is loaded, its method attached and its trained weights (pet_weights.safetensors) loaded,
exactly as `petsweep transfer` does; peft's tuner layers (LoRA, IA3, also inside a composition) are merged
into the weights they wrap, and the model is written with `save_pretrained` beside its tokenizer, so that
`AutoModel*.from_pretrained(DIR)` computes what the run's model computes. Methods that train backbone
parameters in place (full, bitfit, ln, last_layer, selective_module) export as they are, and APET's
sparse deltas are added into their tensors. Methods that add
modules a plain model has no place for (adapters, soft prompts, prefixes, biases added to a bias-free
backbone) are refused with one line: their pet_weights.safetensors, with the run's config, is their export.

`petsweep export RUN_DIR --format peft -o DIR` (export_peft) writes the method as a peft adapter directory
instead (LoRA, IA3, LN tuning, prompt and prefix tuning), checked by loading it back through peft's own
`PeftModel.from_pretrained`; methods with no peft form are refused with one line naming why and which methods
export. adapter_config.json names the base by the backbone's hub id (a local path means nothing elsewhere;
petsweep_base.json keeps the local copy the export read), modules_to_save names the task head once, and
README.md is a model card: method, backbone, task, the run's id and score, petsweep's version, how to load.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from petsweep.methods import METHODS
from petsweep.methods.base import PETMethod
from petsweep.records.status import COMPLETED, RunDir
from petsweep.spec.errors import ConfigError, PetsweepError


def merge_tuner_layers(model: nn.Module, method: PETMethod) -> nn.Module:
    """Merge every peft tuner layer into its base layer and put the base layer back in its place, and every
    parametrization (APET's sparse deltas) into the tensor it parametrizes, after what the method merges
    itself (`merge_for_export`: APET's sampled deltas)."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from torch.nn.utils import parametrize

    method.merge_for_export(model)
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for attr in list(module.parametrizations):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(
                model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer()
            )
    return model


def export_merged(run_dir: str | Path, out: str | Path) -> Path:
    """Write the run's model, method merged, to `out` (save_pretrained + tokenizer); returns `out`."""
    from petsweep.model.backbones import load_pretrained
    from petsweep.model.params import attach_method
    from petsweep.train.checkpoint import load_trainable

    run, spec = _finished_spec(run_dir)
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    plain_keys = set(model.state_dict())
    attached = attach_method(model, spec, tokenizer=tokenizer, training=False)[0]
    load_trainable(attached.model, load_file(run.path / "pet_weights.safetensors"))
    merged = merge_tuner_layers(attached.model, spec.method)
    added = sorted(set(merged.state_dict()) - plain_keys)
    if added:
        method = spec.method
        refusal = method.peft_refusal(_exports())  # a setting peft has no place for: the key it names
        peft = "use --format peft, or " if method.no_peft_form is None and not refusal else ""
        raise ConfigError(
            refusal.key if refusal else "method",
            refusal.value if refusal else method.config.name,
            f"adds parameters a plain {spec.backbone.model_type} model has no place for ({added[0]}, "
            f"{len(added)} in all): {peft}share pet_weights.safetensors with config.yaml",
        )
    out = Path(out)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# --format peft: the run's method as a peft adapter dir (adapter_config.json, adapter_model.safetensors).
# Which methods have a peft form and why the others have none, as their classes say (PETMethod.no_peft_form)
def _peft_forms() -> tuple[tuple[str, ...], dict[str, str]]:
    """(the methods with a peft form, in their `peft_rank` order; {method: why it has none})."""
    classes = {name: METHODS.get(name) for name in METHODS.names()}
    forms = sorted((c.peft_rank, name) for name, c in classes.items() if c.no_peft_form is None)
    return tuple(name for _, name in forms), {n: c.no_peft_form for n, c in classes.items() if c.no_peft_form}


PEFT_FORMS, NO_PEFT_FORM = _peft_forms()
TASK_TYPES = {"encoder": "SEQ_CLS", "decoder": "CAUSAL_LM", "encoder_decoder": "SEQ_2_SEQ_LM"}
BASE_FILE = "petsweep_base.json"  # how to load the base model the adapter goes on


def _finished_spec(run_dir: str | Path, pooling: bool = True):
    """The finished run and its spec. `pooling`: refuse here a head a plain model lacks (export_peft checks
    that after the method: a method with no peft form is the refusal that stands)."""
    from petsweep.model.resolve import resolve_run
    from petsweep.records.retention import require_weights
    from petsweep.run.transfer import with_label_words

    run = RunDir(run_dir)
    if run.state() != COMPLETED or not run.result():
        raise PetsweepError(f"{run_dir}: not COMPLETED; only finished runs have trained weights to export")
    require_weights(run.path)  # trainer.keep=records (or petsweep prune) removed them: one line says so
    spec = with_label_words(resolve_run(run.config()))
    if pooling:
        _check_pooling(spec)
    return run, spec


def _check_pooling(spec) -> None:
    if spec.backbone.family == "encoder" and spec.backbone.pooling != "pooler":
        raise ConfigError(
            "backbone.pooling",
            spec.backbone.pooling,
            "this head is petsweep's own, which a plain "
            "transformers model does not have; only pooling=pooler runs export",
        )


def _run_model(run: RunDir, spec):
    """The run's model as it evaluates: backbone, method attached, trained weights loaded."""
    from petsweep.model.backbones import load_pretrained
    from petsweep.model.params import attach_method
    from petsweep.train.checkpoint import load_trainable

    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached = attach_method(model, spec, tokenizer=tokenizer, training=False)[0]
    saved = load_file(run.path / "pet_weights.safetensors")
    load_trainable(attached.model, saved)
    return attached.model.eval(), tokenizer, saved


def peft_base(spec) -> dict:
    """How to load the base model a --format peft export goes on: transformers class, name (the backbone's
    hub id where it has one: a local path means nothing on another machine), the local copy this export read
    (`local_copy`, where it differs from the name) and kwargs (num_labels, a truncated depth)."""
    from petsweep.model.backbones import _auto_class, _layer_override, head_kwargs, weights_location

    local = weights_location(spec.backbone)
    name = spec.backbone.hub_id or local
    return {
        "class": _auto_class(spec.backbone).__name__,
        "pretrained_model_name_or_path": name,
        **({"local_copy": local} if local != name else {}),
        "kwargs": {**_layer_override(spec.backbone), **head_kwargs(spec.backbone, spec.task.num_labels)},
    }


def _exports() -> str:
    return f"--format peft exports {', '.join(PEFT_FORMS)}"


def _kwargs_text(kwargs: dict) -> str:
    return "".join(f", {k}={v!r}" for k, v in kwargs.items())


def model_card(spec, run: RunDir, base: dict, peft_type: str) -> str:
    """The adapter dir's README.md: what was trained (method, backbone, task), the run's id and score, the
    petsweep that trained and exported it, and how to load it with PeftModel.from_pretrained."""
    import json

    import peft

    from petsweep import __version__
    from petsweep.records import provenance

    result = run.result()
    method = {k: v for k, v in result["config"]["method"].items() if k != "name"}
    recorded = run.path / "provenance.json"
    trained = json.loads(recorded.read_text()) if recorded.exists() else {}
    trained_by = trained.get("packages", {}).get("petsweep", "?") + (
        f" (commit {trained['git_commit'][:12]})" if trained.get("git_commit") else ""
    )
    commit = provenance.git("rev-parse", "HEAD")
    exported_by = __version__ + (f" (commit {commit[:12]})" if commit else "")
    b = spec.backbone
    depth = f", cut to its first {b.num_layers} layer{'s' * (b.num_layers != 1)}" if b.num_layers else ""
    labels = list((result.get("data") or {}).get("label_map") or {}) if b.family == "encoder" else []
    dtype = result.get("backbone_dtype", b.dtype)
    guess = result.get("random_guess_score")
    score = f"{result['metric']} {result['score']:.4f} on test" + (
        f" (random guess {guess:.4f})" if guess is not None else ""
    )
    if result.get("best_dev_score") is not None:
        score += f"; best dev {result['best_dev_score']:.4f} at step {result.get('best_step')}"
    name, cls = base["pretrained_model_name_or_path"], base["class"]
    local = base.get("local_copy")
    lines = [
        "---",
        "library_name: peft",
        *([f"base_model: {b.hub_id}"] if b.hub_id else []),
        f"tags: [petsweep, {spec.method.config.name}, {spec.task.name}]",
        "---",
        "",
        f"# {result['backbone']} / {result['method']} / {result['task']} (seed {result['seed']})",
        "",
        f"A peft {peft_type} adapter exported by petsweep from one finished run.",
        "",
        f"- Method: {result['method']} ({', '.join(f'{k}={v}' for k, v in method.items())})",
        f"- Backbone: {b.name}: {name}{depth} ({b.model_type}, {b.family}, {dtype})",
        f"- Task: {spec.task.name} ({spec.task.kind}"
        + (f"; labels in logit order: {', '.join(map(str, labels))}" if labels else "")
        + ")",
        f"- Run: id {result['run_id'][:12]} (sweep {result.get('sweep_name')}, seed {result['seed']}, "
        f"{result['steps']} steps)",
        f"- Score: {score}",
        f"- Trainable: {result['trainable_params']:,} of {result['total_params']:,} parameters "
        f"(the method's own {result['pet_params']:,})",
        f"- petsweep: trained with {trained_by}, exported with {exported_by}, peft {peft.__version__}; on "
        "export the adapter was loaded back through peft and gave the run's outputs on a probe batch",
        "",
        "## Load",
        "",
        "```python",
        "import transformers",
        "from peft import PeftModel",
        "",
        f'base = transformers.{cls}.from_pretrained("{name}"{_kwargs_text(base["kwargs"])})',
        'model = PeftModel.from_pretrained(base, "path/to/this/dir")',
        "```",
        "",
        f'To load the base from a local copy, pass its directory instead of "{name}"'
        + (f" (this export read it from `{local}`)" if local else "")
        + "; petsweep_base.json holds the same class, name and keyword arguments for scripts. "
        "Load the base as above rather than through AutoPeftModel or adapter_config.json's "
        "base_model_name_or_path alone: the keyword arguments (the task's label count, a truncated depth) "
        "are not in adapter_config.json, and without them the adapter is put on another model. The "
        "tokenizer is in this directory.",
        "",
    ]
    return "\n".join(lines)


def _peft_config(spec, tuned: nn.Module, saved: dict, head_modules: list[str]):
    """The peft config of the run's method (its `peft_config` hook), for peft's model class of the backbone's
    family, with the task head as modules_to_save."""
    # a copy: peft's sequence-classification model extends the list it is given in place
    common = dict(task_type=TASK_TYPES[spec.backbone.family], modules_to_save=list(head_modules) or None)
    return spec.method.peft_config(tuned, saved, head_modules, common)


def _fill(peft_model: nn.Module, method: PETMethod, tuned: nn.Module, saved: dict) -> None:
    """Copy the run's trained tensors into the peft model (its adapter's tensors and its head copies): what
    the method places itself (`fill_peft`: a prompt encoder's), the rest by name."""
    import torch

    state = {**dict(tuned.named_parameters()), **dict(tuned.named_buffers())}
    # peft wraps a tuner's model once more (base_model.model.*) than a prompt-learning one (base_model.*)
    wrapper = "base_model." if peft_model.peft_config["default"].is_prompt_learning else "base_model.model."
    with torch.no_grad():
        used = set(method.fill_peft(peft_model, tuned, saved))
        for peft_name, tensor in peft_model.named_parameters():
            if ".default" not in peft_name or peft_name.startswith("prompt_encoder."):
                continue  # the frozen base, or the prompt done above
            key = peft_name.removeprefix(wrapper)
            for inner in (".modules_to_save.default", ".ln_tuning_layers.default"):
                key = key.replace(inner, "")
            tensor.copy_(state[key])
            used.add(key)
    if set(saved) - used:
        raise PetsweepError(
            f"--format peft: the run's {sorted(set(saved) - used)[:3]} have no place in peft's"
        )


def _outputs(model: nn.Module, batch: dict, spec):
    import torch

    kwargs = dict(batch)
    if spec.backbone.family == "encoder_decoder":
        kwargs["decoder_input_ids"] = batch["input_ids"][:, :4]
    with torch.no_grad():
        return model(**kwargs).logits.float()


def export_peft(run_dir: str | Path, out: str | Path) -> Path:
    """Write the run's method as a peft adapter directory: `PeftModel.from_pretrained(base, out)` computes
    the run's outputs, `base` loaded as petsweep_base.json says (backbone, head class, num_labels, layers).
    The export is checked: it is loaded back through peft onto a fresh base and must give the run's logits on
    a probe batch (for a decoder's prompt, peft returns the prompt's positions too: those are left out)."""
    import json
    import shutil
    import warnings

    import torch
    from peft import PeftModel, get_peft_model

    from petsweep.model.backbones import _torch_dtype, head_parameter_names, load_pretrained

    # the method is checked before the pooling: a run refused for its mean pooling and retrained with
    # pooling=pooler met the method's refusal next
    run, spec = _finished_spec(run_dir, pooling=False)
    method, name, exports = spec.method, spec.method.config.name, _exports()
    if method.no_peft_form is not None:
        raise ConfigError(
            "method",
            name,
            f"has no peft form ({method.no_peft_form}); {exports}; --format merged exports merged models",
        )
    refusal = method.peft_refusal(exports)
    if refusal:
        raise refusal
    _check_pooling(spec)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError("-o", str(out), "exists and is not empty: name a new directory for the adapter")
    tuned, tokenizer, saved = _run_model(run, spec)
    try:
        with warnings.catch_warnings():  # peft's and transformers' deprecation notes: not the user's
            warnings.simplefilter("ignore")
            base = load_pretrained(spec.backbone, spec.task.num_labels)[0]
            head_modules = sorted({n.split(".")[0] for n in head_parameter_names(base, spec.backbone)})
            peft_model = get_peft_model(base, _peft_config(spec, tuned, saved, head_modules))
            _fill(peft_model, method, tuned, saved)
            config = peft_model.peft_config["default"]
            # peft's sequence-classification model appends its own "classifier", "score" to modules_to_save
            # (prompt learning twice, and once more on every load): the file names each head module once
            config.modules_to_save = list(head_modules) or None
            where = peft_base(spec)
            config.base_model_name_or_path = where["pretrained_model_name_or_path"]  # not this machine's path
            peft_model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            (out / BASE_FILE).write_text(
                json.dumps({**where, "run": str(run.path), "run_id": run.result()["run_id"][:12]}, indent=2)
                + "\n"
            )
            (out / "README.md").write_text(model_card(spec, run, where, str(config.peft_type.value)))

            loaded = PeftModel.from_pretrained(load_pretrained(spec.backbone, spec.task.num_labels)[0], out)
            texts = ["a probe sentence for the export", "and a second, somewhat longer one to pad the first"]
            batch = dict(tokenizer(texts, return_tensors="pt", padding=True))
            batch.pop("token_type_ids", None)
            expected, got = _outputs(tuned, batch, spec), _outputs(loaded.eval(), batch, spec)
            extra = method.peft_extra_positions(spec.backbone.family)  # a decoder's prompt under peft
            if got.shape != expected.shape and extra:
                got = got[:, extra:]
            tolerance = 1e-4 if _torch_dtype(spec.backbone) == torch.float32 else 3e-2
            if got.shape != expected.shape:
                problem = f"outputs of shape {tuple(got.shape)}, the run's {tuple(expected.shape)}"
            elif not torch.allclose(got, expected, rtol=tolerance, atol=tolerance):
                problem = (
                    f"other outputs than the run (max difference {(got - expected).abs().max().item():.3g})"
                )
            else:
                problem = None
    except Exception as err:  # peft refuses the model, or its placement does not fit the run's
        problem = f"fails: {' '.join(str(err).split())[:160]}"
    if problem:
        shutil.rmtree(out, ignore_errors=True)
        raise ConfigError(
            "method",
            name,
            f"peft's {name} on {spec.backbone.model_type} ({spec.backbone.family}) {problem}: no peft form "
            f"here ({exports} where peft computes the run); use --format merged, or share "
            "pet_weights.safetensors with config.yaml",
        )
    return out
