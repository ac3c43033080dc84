"""Prompt tuning (Lester et al., 2021): `length` trainable vectors prepended to the input embeddings.

Encoders and decoders get the prompt before their input; encoder-decoders on the encoder input only (one
prompt, as Lester et al., DePT and APET count it; peft's default adds a second, decoder prompt that never
gets a gradient). petsweep installs the prompt with hooks on the model instead of peft's wrapper, which
renames the model (losing or copying the task head) and returns extra logit positions:

- a forward pre-hook turns `input_ids` into embeddings with the prompt in front, extends the attention mask
  (and, for decoders, pads `labels` with -100 under the prompt);
- for decoders a forward hook drops the prompt positions from the logits, so the model returns the bare
  model's output shapes and objectives never know the method;
- `generate` decodes greedily through the hooked forward (methods/layers/decoding.py), returning what the bare
  model's generate returns (for decoders the input ids in front of what was generated).

The prompt is the parameter `soft_prompt.embedding` of the model. Count: length x d.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod
from petsweep.spec.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from petsweep.methods.layers.prompt import SoftPrompt

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
    no_peft_form = None  # peft's prompt tuning, one prompt (num_transformer_submodules=1) as petsweep's
    peft_rank = 2

    def peft_config(self, tuned, saved, head_modules, common):
        import peft

        return peft.PromptTuningConfig(
            num_virtual_tokens=self.config.length, num_transformer_submodules=1, **common
        )

    def fill_peft(self, peft_model, tuned, saved):
        peft_model.prompt_encoder["default"].embedding.weight.copy_(tuned.soft_prompt.embedding)
        return {"soft_prompt.embedding"}

    def peft_extra_positions(self, family):
        return self.config.length if family == "decoder" else 0  # peft's causal LM returns the prompt's too

    def attach(self, model, ctx):
        from petsweep.methods.layers.prompt import SoftPrompt

        c = self.config
        check_positions(model, ctx, c.length, "prompt")
        embedding = model.get_input_embeddings()
        prompt = install(model, SoftPrompt(c.length, embedding), ctx.backbone.family == "decoder")
        setup = [lambda: prompt.initialize(c, embedding.weight, ctx.tokenizer)]
        return Attached(model, [self.group([prompt.embedding])], setup=setup)


def install(model: nn.Module, prompt: SoftPrompt, decoder_only: bool) -> SoftPrompt:
    """Put `prompt` in front of every input of `model` (forward hooks, and `generate` wrapped)."""
    import torch

    from petsweep.methods.layers.decoding import greedy_generate

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
