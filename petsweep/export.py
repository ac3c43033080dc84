"""`petsweep export RUN_DIR -o DIR`: a finished run as a plain transformers model, its method merged.

The run's backbone is loaded, its method attached and its trained weights (pet_weights.safetensors) loaded,
exactly as `petsweep transfer` does; peft's tuner layers (LoRA, IA3, also inside a composition) are merged
into the weights they wrap, and the model is written with `save_pretrained` beside its tokenizer, so that
`AutoModel*.from_pretrained(DIR)` computes what the run's model computes. Methods that train backbone
parameters in place (full, bitfit, ln, last_layer, selective_module) export as they are, and APET's
sparse deltas are added into their tensors. Methods that add
modules a plain model has no place for (adapters, soft prompts, prefixes, biases added to a bias-free
backbone) are refused with one line: their pet_weights.safetensors, with the run's config, is their export.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from safetensors.torch import load_file
from torch import nn

from petsweep.errors import ConfigError, PetsweepError
from petsweep.status import COMPLETED, RunDir


def merge_tuner_layers(model: nn.Module) -> nn.Module:
    """Merge every peft tuner layer into its base layer and put the base layer back in its place, and every
    parametrization (APET's sparse deltas) into the tensor it parametrizes."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from torch.nn.utils import parametrize

    from petsweep.apet_grad import merge_sampled

    merge_sampled(model)
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
    from petsweep.backbones import load_pretrained
    from petsweep.checkpoint import load_trainable
    from petsweep.config import resolve_run
    from petsweep.params import attach_method
    from petsweep.transfer import with_label_words

    run = RunDir(run_dir)
    if run.state() != COMPLETED or not run.result():
        raise PetsweepError(f"{run_dir}: not COMPLETED; only finished runs have trained weights to export")
    spec = with_label_words(resolve_run(yaml.safe_load((run.path / "config.yaml").read_text())))
    if spec.backbone.family == "encoder" and spec.backbone.pooling != "pooler":
        raise ConfigError(
            "backbone.pooling",
            spec.backbone.pooling,
            "this head is petsweep's own, which a plain "
            "transformers model does not have; only pooling=pooler runs export",
        )
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    plain_keys = set(model.state_dict())
    attached = attach_method(model, spec, tokenizer=tokenizer, training=False)[0]
    load_trainable(attached.model, load_file(run.path / "pet_weights.safetensors"))
    merged = merge_tuner_layers(attached.model)
    added = sorted(set(merged.state_dict()) - plain_keys)
    if added:
        raise ConfigError(
            "method",
            spec.method.config.name,
            f"adds parameters a plain {spec.backbone.model_type} model has no place for ({added[0]}, "
            f"{len(added)} in all): export its pet_weights.safetensors with the run's config.yaml instead",
        )
    out = Path(out)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
