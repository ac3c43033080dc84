"""Greedy decoding through a model's own (hooked) forward: how every method generates.

Prompt, DePT and prefix tuning put their vectors into the model with forward hooks. transformers'
`generate()` does not call the model the way a forward does: it passes a cache or not, a mask or not,
inputs_embeds at one step and ids at the next, and how it does so changes between releases (5.25 broke
prefix and DePT generation for unpadded batches). It also applies a model's generation_config (BART forces
EOS, bans repeated n-grams, searches beams), which makes methods decoded through it incomparable with the
others. So petsweep decodes itself, the same plain greedy search for every method (objectives.py, under
`task.decoding=greedy`): the hooked forward's last position's argmax is the next token.

Rows are decoded without padding: rows of one length (in tokens) decode together as one batch, any other
row apart, so what a row generates never depends on padding or on how its batch was laid out (batching rows
of one length changes only the last bits of a float sum; tests check tokens and logits within 1e-5 against
the no-cache forward of each row alone). A row's first forward reads its whole text through the hooked
forward (exactly the computation training and scoring use) and returns a key/value cache; every later step
feeds only the new token with that cache, which every method's hooks allow:

- prefix's pre-hook builds the prefix cache only when no cache is handed in, so later steps extend the cache
  that already holds the prefix;
- prompt's and DePT's pre-hooks act on `input_ids` only, so on decoders later steps hand in the new token's
  embedding (`inputs_embeds`; DePT adds its offset of the token's position, `model.decoding_embed`), and the
  prompt's post-hook drops prompt positions only from the forward that put them in; on encoder-decoders the
  prompt is in the encoder's output, which later steps reuse;
- the attention mask of a later step is all ones over the cache and the new token (prefix or prompt
  positions included), positions continue from the cache's length, as in the no-cache forward.

`cache=False` decodes each row alone and recomputes its whole text at every step (quadratic in the
generated length); tests check both give the same tokens. benchmarks/decoding_speed.py times both: on a tiny
GPT-2 (1 CPU thread, 16 rows, 32 new tokens) the cache is ~20x faster than no cache for rows of one length
(as fast as transformers' batched generate()), ~2x for rows of 16 to 32 tokens (each length its own batch).
With `synced_gpus` rows are decoded one at a time (cached), so every rank makes `max_new_tokens` forwards per
row whatever the lengths of its rows. Only greedy decoding is offered; sampling and beams are refused.

Rows: an empty row (no real token) of a decoder is decoded from the model's BOS token where it has one, and
generates nothing (padding) where it has none; an empty encoder-decoder source generates nothing. After a row
emits EOS, every later position is `pad_token_id` (as transformers does); with `synced_gpus` (ZeRO-3 on
several ranks) every row still makes `max_new_tokens` forwards, so every rank makes the same number of
forwards, but what follows EOS is never kept. `max_new_tokens=0` generates nothing.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

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
        return greedy_decode(
            model,
            input_ids,
            attention_mask,
            encoder_decoder=encoder_decoder,
            max_new_tokens=_first(kwargs.get("max_new_tokens"), getattr(config, "max_new_tokens", None), 20),
            min_new_tokens=_first(kwargs.get("min_new_tokens"), 0),
            pad_token_id=kwargs.get("pad_token_id"),
            eos_token_id=kwargs.get("eos_token_id"),
            synced_gpus=kwargs.get("synced_gpus", False),
        )

    return generate


@torch.no_grad()
def greedy_decode(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    encoder_decoder: bool,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    pad_token_id: int | None = None,
    eos_token_id=None,
    synced_gpus: bool = False,
    cache: bool = True,
    scores: list | None = None,
) -> torch.Tensor:
    """Greedy tokens of every row of `input_ids` (real tokens where `attention_mask` is 1), laid out as the
    bare model's generate() returns them: for decoders the input ids followed by the new tokens, for
    encoder-decoders the decoder's start token followed by them; rows that stop early end in padding.
    `scores`, if given, gets each row's list of the logits its kept tokens were picked from."""
    if max_new_tokens is None or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r}: a number of tokens >= 0")
    config = getattr(model, "generation_config", None)
    pad = _first(pad_token_id, getattr(config, "pad_token_id", None), 0)
    eos = _ids(_first(eos_token_id, getattr(config, "eos_token_id", None)))
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    sources, texts = [], []
    for ids, keep in zip(input_ids, mask.bool()):
        source = ids[keep][None]
        if encoder_decoder:
            text = source.new_full((1, 1), _decoder_start(model)) if source.shape[1] else None
        else:
            bos = _bos(model)
            text = source if source.shape[1] else (source.new_full((1, 1), bos) if bos is not None else None)
        sources.append(source)
        texts.append(text)
    rows: list[list[int]] = [[] for _ in sources]
    kept = [[] for _ in sources]
    steps = (max_new_tokens, min_new_tokens, eos, synced_gpus)
    if cache and not synced_gpus:  # rows of one length decode together (no padding: the same sums per row)
        groups: dict[tuple, list[int]] = {}
        for i, (source, text) in enumerate(zip(sources, texts)):
            if text is not None:  # an empty row without BOS generates nothing
                groups.setdefault((source.shape[1], text.shape[1]), []).append(i)
        for members in groups.values():
            source = torch.cat([sources[i] for i in members])
            text = torch.cat([texts[i] for i in members])
            group_kept = [[] for _ in members]
            new = _decode_cached(model, source, text, encoder_decoder, *steps, group_kept)
            for i, tokens, logits in zip(members, new, group_kept):
                rows[i], kept[i] = tokens, logits
    else:  # one row at a time: a ZeRO-3 rank makes max_new_tokens forwards per row, as every other rank
        decode = _decode_cached if cache else _decode_plain
        for i, (source, text) in enumerate(zip(sources, texts)):
            row_kept = [[]]
            rows[i] = decode(model, source, text, encoder_decoder, *steps, row_kept)[0]
            kept[i] = row_kept[0]
    if scores is not None:
        scores.extend(kept)
    width = max([len(r) for r in rows], default=0)
    out = input_ids.new_full((len(rows), width), pad)  # a row's tokens after its EOS are padding
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=out.dtype)
    if encoder_decoder:
        return torch.cat([out.new_full((len(rows), 1), _decoder_start(model)), out], 1)
    return torch.cat([input_ids, out], 1)


def _steps(max_new, min_new, eos, synced, logits_of, rows, kept):
    """The greedy loop over `rows` rows decoded together: `logits_of(token)` gives each row's next logits
    (token: the previous picks, None at the first step) or None (an empty row's dummy forward). A row keeps
    its tokens up to its EOS; synced decoding makes every step's forward even when all rows are done."""
    new, done = [[] for _ in range(rows)], [False] * rows
    token = None
    for step in range(max_new):
        if all(done) and not synced:
            break
        last = logits_of(token)
        if last is None:
            continue
        last = last.float()
        raw = last.clone()
        if step < min_new and eos:
            last[:, eos] = float("-inf")
        token = last.argmax(-1, keepdim=True)
        for i in range(rows):
            if not done[i]:
                kept[i].append(raw[i])
                new[i].append(int(token[i]))
                done[i] = int(token[i]) in eos
    return new


def _decode_plain(model, source, text, encoder_decoder, max_new, min_new, eos, synced, kept):
    """Every step one forward over the whole text so far."""
    state = {"text": text}

    def logits_of(token):
        if state["text"] is None:
            _dummy_forward(model, source, encoder_decoder, synced)
            return None
        if token is not None:
            state["text"] = torch.cat([state["text"], token.to(source.device)], 1)
        text = state["text"]
        if encoder_decoder:
            out = model(input_ids=source, attention_mask=torch.ones_like(source), decoder_input_ids=text)
        else:
            out = model(input_ids=text, attention_mask=torch.ones_like(text))
        return out.logits[:, -1]

    return _steps(max_new, min_new, eos, synced, logits_of, source.shape[0], kept)


def _decode_cached(model, source, text, encoder_decoder, max_new, min_new, eos, synced, kept):
    """The first step one forward over the whole text (returning the cache), later steps the new tokens;
    rows of `source` and `text` have no padding (one length each)."""
    state = {"past": None, "encoded": None, "length": 0 if text is None else text.shape[1]}
    embed = getattr(model, "decoding_embed", None) or (
        lambda ids, position: model.get_input_embeddings()(ids)
    )

    def logits_of(token):
        if text is None:
            _dummy_forward(model, source, encoder_decoder, synced)
            return None
        if token is None:  # the row's text through the hooked forward, as training reads it
            if encoder_decoder:
                out = model(
                    input_ids=source,
                    attention_mask=torch.ones_like(source),
                    decoder_input_ids=text,
                    use_cache=True,
                )
                state["encoded"] = out.encoder_last_hidden_state
            else:
                out = model(input_ids=text, attention_mask=torch.ones_like(text), use_cache=True)
        else:
            token = token.to(source.device)
            past = state["past"]
            if encoder_decoder:
                encoded = state["encoded"]
                out = model(
                    encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                    attention_mask=torch.ones(encoded.shape[:2], dtype=source.dtype, device=source.device),
                    decoder_input_ids=token,
                    past_key_values=past,
                    use_cache=True,
                )
            else:
                width = past.get_seq_length() + 1  # prefix or prompt positions, the text, the new token
                mask = torch.ones(token.shape[0], width, dtype=source.dtype, device=source.device)
                out = model(
                    inputs_embeds=embed(token, state["length"]),
                    attention_mask=mask,
                    past_key_values=past,
                    use_cache=True,
                )
            state["length"] += 1
        state["past"] = out.past_key_values
        return out.logits[:, -1]

    return _steps(max_new, min_new, eos, synced, logits_of, source.shape[0], kept)


def _dummy_forward(model, source, encoder_decoder, synced) -> None:
    """An empty row's step on a synced rank: one forward (on a pad token), so every rank steps together."""
    if not synced:
        return
    config = getattr(model, "generation_config", None)
    ids = source.new_full((1, 1), _first(getattr(config, "pad_token_id", None), 0))
    if encoder_decoder:
        model(input_ids=ids, decoder_input_ids=source.new_full((1, 1), _decoder_start(model)))
    else:
        model(input_ids=ids)


def _bos(model) -> int | None:
    config = getattr(model, "generation_config", None)
    return _first(getattr(config, "bos_token_id", None), getattr(model.config, "bos_token_id", None))


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
