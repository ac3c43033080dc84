"""Greedy decoding through a hooked model's own forward, for methods that change what the model reads.

Prompt, DePT and prefix tuning put their vectors into the model with forward hooks. transformers'
`generate()` does not call the model the way a forward does: it passes a cache or not, a mask or not,
inputs_embeds at one step and ids at the next, and how it does so changes between releases (5.25 broke
prefix and DePT generation for unpadded batches). So these methods decode themselves: every step is one
plain forward of the hooked model over the row's whole text so far, exactly the computation that training
and scoring use, and its last position's argmax is the next token.

Each row is decoded alone, without padding and without a cache: what a row generates never depends on the
other rows of its batch or on how a cache is laid out. That costs a forward over the whole text per token
(quadratic in the generated length); for the short targets of PET evaluation it is the price of exactness.
Only greedy decoding is offered (what petsweep's evaluation asks for); sampling and beams are refused.
"""

from __future__ import annotations

import torch
from torch import nn

UNSUPPORTED = {"do_sample": False, "num_beams": 1, "num_return_sequences": 1}


def greedy_generate(model: nn.Module, encoder_decoder: bool):
    """A `generate(input_ids, attention_mask, **kwargs)` for `model` that decodes greedily through its
    (hooked) forward, returning what the bare model's generate returns: for decoders the input ids followed
    by the new tokens, for encoder-decoders the decoder's start token followed by them."""

    @torch.no_grad()
    def generate(input_ids=None, attention_mask=None, **kwargs):
        for key, allowed in UNSUPPORTED.items():
            if kwargs.get(key, allowed) != allowed:
                raise ValueError(f"{key}={kwargs[key]!r}: greedy decoding ({key}={allowed}) only")
        config = getattr(model, "generation_config", None)
        max_new = kwargs.get("max_new_tokens") or getattr(config, "max_new_tokens", None) or 20
        min_new = kwargs.get("min_new_tokens") or 0
        pad = _first(kwargs.get("pad_token_id"), getattr(config, "pad_token_id", None), 0)
        eos = _ids(_first(kwargs.get("eos_token_id"), getattr(config, "eos_token_id", None)))
        # ranks of a ZeRO-3 run step together: every rank makes the same number of forwards
        stop_early = not kwargs.get("synced_gpus", False)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        rows = []
        for ids, keep in zip(input_ids, mask.bool()):
            row = _decode_row(model, ids[keep][None], encoder_decoder, max_new, min_new, eos, stop_early)
            rows.append(row)
        new = _pad_right([r[0] for r in rows], pad)
        if encoder_decoder:
            start = _decoder_start(model)
            return torch.cat([new.new_full((len(rows), 1), start), new], 1)
        return torch.cat([input_ids, new], 1)

    return generate


def _decode_row(model, source, encoder_decoder, max_new, min_new, eos, stop_early) -> torch.Tensor:
    device = source.device
    text = source.new_full((1, 1), _decoder_start(model)) if encoder_decoder else source
    new = []
    for step in range(max_new):
        if encoder_decoder:
            ones = torch.ones_like(source)
            logits = model(input_ids=source, attention_mask=ones, decoder_input_ids=text).logits
        else:
            logits = model(input_ids=text, attention_mask=torch.ones_like(text)).logits
        last = logits[:, -1].float()
        if step < min_new and eos:
            last[:, eos] = float("-inf")
        token = last.argmax(-1, keepdim=True).to(device)
        text = torch.cat([text, token], 1)
        new.append(int(token))
        if stop_early and int(token) in eos:
            break
    return torch.tensor([new], dtype=source.dtype, device=device)


def _pad_right(rows: list[torch.Tensor], pad: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=rows[0].dtype, device=rows[0].device)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _decoder_start(model) -> int:
    config = getattr(model, "generation_config", None)
    start = getattr(config, "decoder_start_token_id", None)
    return start if start is not None else model.config.decoder_start_token_id


def _first(*values):
    return next((v for v in values if v is not None), None)


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
