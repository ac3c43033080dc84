"""Where things are in each architecture: canonical module names, kept once per `model_type`.

Methods name what they act on canonically (`q`, `ffn_out`, `norms`, ...); this map turns those names into
regexes over module names (peft's full-match `target_modules` form). A backbone YAML's `modules` entries
override or extend its type's map. BLOOM and GPT-2 compute q, k and v in ONE fused projection: asking for any
of them there targets that module (`qkv`), so "LoRA on q,v" trains q, k and v; counts and docs say so.

Canonical names:
    q, k, v, o               self-attention projections (encoder and decoder)
    cross_q, cross_k, cross_v, cross_o   cross-attention of encoder-decoders
    qkv                      the fused q/k/v projection (BLOOM, GPT-2)
    ffn_in, ffn_out          the feed-forward input (both halves of a gated FFN) and output projections
    norms                    every LayerNorm / RMSNorm, embedding and final norms included
    blocks                   the transformer blocks: group 1 the stack, group 2 the block index
"""

from __future__ import annotations

from dataclasses import dataclass, field

_BERT = {
    "q": r".*attention\.self\.query",
    "k": r".*attention\.self\.key",
    "v": r".*attention\.self\.value",
    "o": r".*attention\.output\.dense",
    "ffn_in": r".*intermediate\.dense",
    "ffn_out": r".*layer\.\d+\.output\.dense",
    "norms": r".*LayerNorm",
    "blocks": r"(.*encoder\.layer)\.(\d+)",
}


@dataclass(frozen=True)
class Architecture:
    modules: dict[str, str]
    fused: dict[str, str] = field(default_factory=dict)  # canonical name -> the fused module it lives in


ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture(_BERT),
    "roberta": Architecture(_BERT),
    "t5": Architecture(
        {
            "q": r".*SelfAttention\.q",
            "k": r".*SelfAttention\.k",
            "v": r".*SelfAttention\.v",
            "o": r".*SelfAttention\.o",
            "cross_q": r".*EncDecAttention\.q",
            "cross_k": r".*EncDecAttention\.k",
            "cross_v": r".*EncDecAttention\.v",
            "cross_o": r".*EncDecAttention\.o",
            "ffn_in": r".*DenseReluDense\.wi(?:_0|_1)?",
            "ffn_out": r".*DenseReluDense\.wo",
            "norms": r".*(?:\.layer_norm|final_layer_norm)",
            "blocks": r"(.*(?:encoder|decoder)\.block)\.(\d+)",
        }
    ),
    "bart": Architecture(
        {
            "q": r".*self_attn\.q_proj",
            "k": r".*self_attn\.k_proj",
            "v": r".*self_attn\.v_proj",
            "o": r".*self_attn\.out_proj",
            "cross_q": r".*encoder_attn\.q_proj",
            "cross_k": r".*encoder_attn\.k_proj",
            "cross_v": r".*encoder_attn\.v_proj",
            "cross_o": r".*encoder_attn\.out_proj",
            "ffn_in": r".*layers\.\d+\.fc1",
            "ffn_out": r".*layers\.\d+\.fc2",
            "norms": r".*(?:layer_norm|layernorm_embedding)",
            "blocks": r"(.*(?:encoder|decoder)\.layers)\.(\d+)",
        }
    ),
    "bloom": Architecture(
        {
            "qkv": r".*self_attention\.query_key_value",
            "o": r".*self_attention\.dense",
            "ffn_in": r".*mlp\.dense_h_to_4h",
            "ffn_out": r".*mlp\.dense_4h_to_h",
            "norms": r".*(?:layernorm|ln_f)",
            "blocks": r"(.*transformer\.h)\.(\d+)",
        },
        fused={"q": "qkv", "k": "qkv", "v": "qkv"},
    ),
    "gpt2": Architecture(
        {
            "qkv": r".*attn\.c_attn",
            "o": r".*attn\.c_proj",
            "ffn_in": r".*mlp\.c_fc",
            "ffn_out": r".*mlp\.c_proj",
            "norms": r".*(?:ln_1|ln_2|ln_f)",
            "blocks": r"(.*transformer\.h)\.(\d+)",
        },
        fused={"q": "qkv", "k": "qkv", "v": "qkv"},
    ),
    "llama": Architecture(
        {
            "q": r".*self_attn\.q_proj",
            "k": r".*self_attn\.k_proj",
            "v": r".*self_attn\.v_proj",
            "o": r".*self_attn\.o_proj",
            "ffn_in": r".*mlp\.(?:gate_proj|up_proj)",
            "ffn_out": r".*mlp\.down_proj",
            "norms": r".*(?:input_layernorm|post_attention_layernorm|model\.norm)",
            "blocks": r"(.*model\.layers)\.(\d+)",
        }
    ),
}


def architecture(model_type: str, overrides: dict[str, str] | None = None) -> Architecture:
    """The map of `model_type`, with a YAML's `modules` entries laid over it (they win)."""
    base = ARCHITECTURES.get(model_type, Architecture({}))
    fused = {k: v for k, v in base.fused.items() if k not in (overrides or {})}
    return Architecture({**base.modules, **(overrides or {})}, fused)
