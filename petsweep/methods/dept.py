"""DePT (Shi and Lipani, 2024): a short soft prompt plus a low-rank update of the input embeddings.

    python run.py method=dept task=rte                        # m = 60 prompt vectors, rank 30, s = 256
    python run.py method=dept method.length=40 method.rank=45 method.lowrank_lr=5e-3  # default: lr

Prompt tuning with `length` (m) vectors, installed as prompt.py installs it, and a pair A (s x r, Kaiming
uniform) and B (r x d, zero) whose product, scaled by alpha / sqrt(r), is added to the frozen input embedding
of the token at position i of the input (row i of A B; the seed code's rsLoRA-style scaling, alpha = 8). The
model starts as plain prompt tuning. Prompt and pair train at their own learning rates (`lr`, `lowrank_lr`).

s is the task's `max_length`: the seed pads every input to s and adds A B to all of it. petsweep pads to the
longest input of a batch and adds the rows of the positions present: the same sums on every real token
(padding is masked out either way), without computing on padding. A position counts real tokens, so a
left-padded input (a decoder generating) gets the rows it got when trained right-padded; tokens a decoder
generates past position s get no offset, as there is no row for them.

Count: m d + r (s + d), which depends on s: for t5-base with (m, r, s) = (60, 30, 256) it is 76,800, prompt
tuning's count with 100 vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

from petsweep.methods import METHODS
from petsweep.methods.base import Attached, MethodConfig, PETMethod
from petsweep.methods.prompt import INITS, check_positions, install
from petsweep.spec.errors import ConfigError

SEED_TEXT = "Classify this text is postive or not:"  # the seed's --init_text, spelling kept: same tokens


@dataclass
class DeptConfig(MethodConfig):
    """DePT's hyper-parameters (beside those of every method: MethodConfig); s is task.max_length.

    Attributes:
        lr: learning rate of the prompt.
        length: prompt vectors (m).
        rank: rank r of the embedding update A B.
        lowrank_lr: learning rate of A and B; null: the prompt's `lr` (the seed's default: its
            --lora_embedding_lr is None, and then everything trains at --learning_rate).
        alpha: the update's scale is alpha / sqrt(rank).
        init: how the prompt starts: text (the tokens of `init_text`, repeated), vocab or random.
        init_text: the text of `init: text` (default: the seed code's).
        init_special_tokens: whether the tokens of `init_text` include the tokenizer's special tokens (the
            seed's `tokenizer(init_text)["input_ids"]`: T5's `</s>` at the end); false: the text's own.
        init_range: the range of `init: random`.
        adam_eps: AdamW's eps: the seed's transformers.AdamW default, 1e-6 (torch's is 1e-8).
    """

    lr: float = 3e-1
    length: int = 60
    rank: int = 30
    lowrank_lr: float | None = None
    alpha: float = 8.0
    init: str = "text"
    init_text: str = SEED_TEXT
    init_range: float = 0.5
    init_special_tokens: bool = True
    adam_eps: float = 1e-6

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.length, int) or self.length < 1:
            raise ConfigError("method.length", self.length, "must be a positive number of prompt vectors")
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError("method.rank", self.rank, "must be a positive rank")
        if self.lowrank_lr is not None and not self.lowrank_lr > 0:
            raise ConfigError("method.lowrank_lr", self.lowrank_lr, "the learning rate must be positive")
        if self.init not in INITS:
            raise ConfigError("method.init", self.init, f"choose one of: {', '.join(INITS)}")
        if self.init == "text" and not self.init_text:
            raise ConfigError("method.init_text", self.init_text, "init=text needs a text")


@METHODS.register("dept")
class DeptMethod(PETMethod):
    budget_knobs = ("length", "rank")
    budget_strategy = "rank_and_length"
    budget_replaces = ("rank",)
    budget_reads = ("length",)  # nearest and below start from the configured pairing; global breaks ties
    Config = DeptConfig
    no_peft_form = "peft has no DePT tuner (a prompt plus a low-rank embedding offset)"

    def attach(self, model, ctx):
        import torch

        from petsweep.methods.layers.dept import PositionOffset
        from petsweep.methods.layers.prompt import SoftPrompt

        c = self.config
        check_positions(model, ctx, c.length, "DePT prompt")
        embedding = model.get_input_embeddings()
        rows, width = _rows(ctx), embedding.weight.shape[1]
        if c.rank > min(rows, width):
            raise ConfigError(
                "method.rank", c.rank, f"exceeds min(s, d) = min({rows}, {width}) (s is task.max_length)"
            )
        offset = PositionOffset(rows, c.rank, width, c.alpha, embedding.weight)
        prompt = install(model, SoftPrompt(c.length, embedding, offset), ctx.backbone.family == "decoder")

        def setup():
            prompt.initialize(c, embedding.weight, ctx.tokenizer)
            if c.init == "text" and c.init_special_tokens:  # the seed's ids: with special tokens
                ids = ctx.tokenizer(c.init_text)["input_ids"]
                rows = (ids * -(-c.length // len(ids)))[: c.length]
                with torch.no_grad():
                    prompt.embedding.copy_(embedding.weight[torch.tensor(rows)])
            offset.reset()

        pair = [offset.lora_embedding_A, offset.lora_embedding_B]
        groups = [self.group([prompt.embedding]), self.group(pair, name="lowrank", lr=c.lowrank_lr or c.lr)]
        note = (
            f"DePT's count depends on s = task.max_length = {rows}: m d + r (s + d) = "
            f"{c.length} x {width} + {c.rank} x ({rows} + {width})"
        )
        return Attached(model, groups, notes=[note], setup=[setup])


def _rows(ctx) -> int:
    if ctx.task is None:
        raise ConfigError("task", None, "DePT sizes A by the task's max_length: attach it with a task")
    return ctx.task.max_length
