"""Prompt tuning (Lester et al., 2021): `length` trainable vectors prepended to the input embeddings.

Encoders and decoders get the prompt before their input; encoder-decoders on the encoder input only (one
prompt, as Lester et al., DePT and APET count it; peft's default adds a second, decoder prompt that never
gets a gradient). petsweep installs the prompt with hooks on the model instead of peft's wrapper, which
renames the model (losing or copying the task head) and returns extra logit positions:

- a forward pre-hook turns `input_ids` into embeddings with the prompt in front, extends the attention mask
  (and, for decoders, pads `labels` with -100 under the prompt);
- for decoders a forward hook drops the prompt positions from the logits, so the model returns the bare
  model's output shapes and objectives never know the method;
- `generate` decodes greedily through the hooked forward (methods/decoding.py), returning what the bare
  model's generate returns (for decoders the input ids in front of what was generated).

The prompt is the parameter `soft_prompt.embedding` of the model. Count: length x d.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from petsweep.methods.base import METHODS, Attached, MethodConfig, PETMethod
from petsweep.methods.decoding import greedy_generate
from petsweep.spec.errors import ConfigError

IGNORE = -100
INITS = ("vocab", "text", "random")


@dataclass
class PromptConfig(MethodConfig):
    """Prompt's hyper-parameters (beside those of every method: MethodConfig).

    Attributes:
        length: prompt vectors (virtual tokens).
        init: vocab (copies of randomly drawn token embeddings, seeded by the run seed), text (the
            embeddings of `init_text`'s tokens, repeated to fill the prompt, as peft and DePT do) or random
            (uniform in +-init_range).
        init_text: the text of `init: text` (e.g. a task instruction).
        init_range: the range of random initialisation.
    """

    lr: float = 3e-1
    length: int = 100
    init: str = "vocab"
    init_text: str | None = None
    init_range: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.length, int) or self.length < 1:
            raise ConfigError("method.length", self.length, "must be a positive number of prompt vectors")
        if self.init not in INITS:
            raise ConfigError("method.init", self.init, f"choose one of: {', '.join(INITS)}")
        if (self.init == "text") != bool(self.init_text):
            raise ConfigError("method.init_text", self.init_text, "give a text exactly when method.init=text")


class SoftPrompt(nn.Module):
    """The prompt vectors, and optionally an `offset` of the input embeddings by position (DePT's A B)."""

    def __init__(self, length: int, embedding: nn.Embedding, offset: nn.Module | None = None):
        super().__init__()
        weight = embedding.weight
        self.embedding = nn.Parameter(
            torch.empty(length, weight.shape[1], device=weight.device, dtype=weight.dtype)
        )
        self.offset = offset

    def initialize(self, c, vocabulary: torch.Tensor, tokenizer) -> None:
        """Rows of the vocabulary (drawn at random, or the tokens of `init_text`) or uniform noise."""
        length = self.embedding.shape[0]
        if c.init == "vocab":
            self.embedding.copy_(vocabulary[torch.randint(0, vocabulary.shape[0], (length,))])
        elif c.init == "text":
            ids = _text_ids(c, tokenizer)
            self.embedding.copy_(vocabulary[torch.tensor((ids * -(-length // len(ids)))[:length])])
        else:
            self.embedding.uniform_(-c.init_range, c.init_range)

    def inputs(self, embeds: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's input embeddings and mask: the prompt in front of the (offset) token embeddings."""
        batch, length = embeds.shape[0], self.embedding.shape[0]
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        if self.offset is not None:  # the mask's last columns are the tokens' (a prefix may add ones before)
            embeds = self.offset(embeds, token_positions(mask[:, mask.shape[1] - embeds.shape[1] :]))
        prompt = self.embedding.unsqueeze(0).expand(batch, -1, -1).to(embeds.dtype)
        ones = torch.ones(batch, length, dtype=mask.dtype, device=mask.device)
        return torch.cat([prompt, embeds], 1), torch.cat([ones, mask], 1)


def token_positions(mask: torch.Tensor) -> torch.Tensor:
    """Each token's position among the real tokens of its row (left padding does not shift it); pads < 0."""
    return mask.long().cumsum(1) - 1 - (mask == 0).long() * mask.shape[1]


def _text_ids(c: PromptConfig, tokenizer) -> list[int]:
    """The token ids of `init_text`."""
    if tokenizer is None:
        raise ValueError("prompt init=text needs the backbone's tokenizer (AttachContext.tokenizer)")
    ids = tokenizer(c.init_text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError("method.init_text", c.init_text, "has no tokens for this backbone's tokenizer")
    return ids


def check_positions(model: nn.Module, ctx, length: int, what: str) -> None:
    """Refuse `length` virtual positions that, with the task's inputs, outrun the model's positions."""
    config = getattr(model, "config", None)
    limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
    limit = next((v for v in limits if isinstance(v, int)), None)  # None: relative positions (T5)
    needed = length + (ctx.task.max_length if ctx.task is not None else 0)
    if limit is not None and needed > limit:
        raise ConfigError(
            "method.length",
            length,
            f"a {length}-vector {what} plus task.max_length="
            f"{ctx.task.max_length} is {needed} positions; {ctx.backbone.name} has {limit}",
        )


@METHODS.register("prompt")
class PromptMethod(PETMethod):
    budget_knobs = ("length",)
    budget_strategy = "length"
    budget_replaces = ("length",)
    Config = PromptConfig

    def attach(self, model, ctx):
        c = self.config
        check_positions(model, ctx, c.length, "prompt")
        embedding = model.get_input_embeddings()
        prompt = install(model, SoftPrompt(c.length, embedding), ctx.backbone.family == "decoder")
        setup = [lambda: prompt.initialize(c, embedding.weight, ctx.tokenizer)]
        return Attached(model, [self.group([prompt.embedding])], setup=setup)


def install(model: nn.Module, prompt: SoftPrompt, decoder_only: bool) -> SoftPrompt:
    """Put `prompt` in front of every input of `model` (forward hooks, and `generate` wrapped)."""
    model.add_module("soft_prompt", prompt)
    embedding = model.get_input_embeddings()
    length = prompt.embedding.shape[0]

    prompted = []  # whether the running forward put the prompt in (a cached decoding step does not)

    def before(module, args, kwargs):
        prompted.append(kwargs.get("input_ids") is not None)
        if kwargs.get("input_ids") is None:
            return args, kwargs  # embeddings handed in already, or an encoder-decoder's decoder step
        embeds, mask = prompt.inputs(embedding(kwargs.pop("input_ids")), kwargs.get("attention_mask"))
        kwargs.update(inputs_embeds=embeds, attention_mask=mask)
        if decoder_only and kwargs.get("labels") is not None:
            labels = kwargs["labels"]
            kwargs["labels"] = torch.cat([labels.new_full((labels.shape[0], length), IGNORE), labels], 1)
        return args, kwargs

    def after(module, args, kwargs, output):
        put_in = prompted.pop() if prompted else True
        if decoder_only and put_in and getattr(output, "logits", None) is not None:
            output.logits = output.logits[:, length:]  # the bare model's positions only
        return output

    model.register_forward_pre_hook(before, with_kwargs=True)
    model.register_forward_hook(after, with_kwargs=True)
    if hasattr(model, "generate"):  # encoders never generate; decoders and encoder-decoders decode greedily
        model.generate = greedy_generate(model, encoder_decoder=not decoder_only)
        if prompt.offset is not None:  # a cached decoding step's token gets its position's offset (DePT)
            model.decoding_embed = lambda ids, position: prompt.offset(
                embedding(ids), torch.full_like(ids, position)
            )
    return prompt
