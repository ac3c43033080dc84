"""Fused training: K runs that share a frozen backbone train on it together, one forward over all their rows.

Each member is built exactly as it would be alone (seeded, its data read, the backbone loaded, its method
attached: petsweep.run.app.prepare), and keeps its own model object for everything that is the run's own: its
optimizer, schedule, clipping, evaluation, checkpoints and records (petsweep.train.loop.Training). Then its
frozen weights are swapped for the first member's identical tensors (one copy in memory), and a fused model is
built over all of them: shared modules run once over the row-concatenated batch, LoRA layers run the shared
projection once and each member's low-rank update on its own rows only, and modules whose weights differ
between members (the task heads) run each member's copy on its rows. Rows never interact in an encoder, so
each member's loss, gradients and updates are its solo run's: tests/test_fused.py holds that to 1e-6.

What may fuse is petsweep/run/fusable.py's rule: encoders with a classification head, LoRA without dropout,
BitFit or LN tuning (their trained modules are routed per member like the heads), on a backbone without
dropout (`backbone.dropout=0`), since dropout masks drawn for a fused batch cannot be the masks each run would
draw alone.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
import traceback
from dataclasses import dataclass, field

import torch
from torch import nn

log = logging.getLogger("petsweep")


@dataclass
class Rows:
    """How many rows of the fused batch each member has, in member order (0: not in this batch)."""

    counts: list[int] = field(default_factory=list)

    def slices(self):
        start = 0
        for member, n in enumerate(self.counts):
            if n:
                yield member, slice(start, start + n)
            start += n


# batch the members' LoRA products (stacked A and B, one batched product per group of members with the same
# row count) instead of two small products per member; False: the per-member loop (benchmarks/fused.py's
# "before" column). Both give each member's solo numbers to the tests' 1e-6.
BATCHED = True


def _plain_lora(layer: nn.Module) -> str | None:
    """The one adapter of a LoRA layer the batched path can run (nn.Linear A and B without bias, no dropout,
    no DoRA), or None: the per-member loop runs it."""
    adapters = [a for a in layer.active_adapters if a in layer.lora_A]
    if len(adapters) != 1:
        return None
    name = adapters[0]
    a, b = layer.lora_A[name], layer.lora_B[name]
    plain = (
        type(a) is nn.Linear
        and type(b) is nn.Linear
        and a.bias is None
        and b.bias is None
        and isinstance(layer.lora_dropout[name], nn.Identity)
        and not getattr(layer, "use_dora", {}).get(name, False)
        and not isinstance(layer.scaling[name], torch.Tensor)
    )
    return name if plain else None


class FusedLoRA(nn.Module):
    """A layer that is LoRA in some members. The shared projection runs once, over every row, when members
    share it; a member whose projection is its own (BitFit training its bias, a different frozen copy) runs
    its own on its rows; then each LoRA member's update on its own rows (peft's arithmetic: result +
    lora_B(lora_A(dropout(x))) * scaling, per active adapter). No member's rows see another's weights.

    The updates of members with the same number of rows are one batched product: their A (and B) stacked,
    zero-padded to the largest rank (zero columns add exact zeros), their rows stacked, `torch.bmm` per
    factor. Each member's A and B get gradients from its own rows only (a member whose rows went NaN cannot
    reach another's gradients, as with one product per member)."""

    def __init__(self, base: nn.Module, bases: list[nn.Module | None], layers: list[nn.Module | None], rows):
        super().__init__()
        self.base = base  # the projection members share
        # not registered: the members own them; None: the member's projection is `base`
        self._bases, self._layers, self._rows = bases, layers, rows
        self._adapters = [None if layer is None else _plain_lora(layer) for layer in layers]

    def _one(self, layer: nn.Module, piece: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for adapter in layer.active_adapters:
            if adapter not in layer.lora_A:
                continue
            lora_a, lora_b = layer.lora_A[adapter], layer.lora_B[adapter]
            mine = layer._cast_input_dtype(x, lora_a.weight.dtype)
            piece = piece + lora_b(lora_a(layer.lora_dropout[adapter](mine))) * layer.scaling[adapter]
        return piece

    def _batched(self, x: torch.Tensor, members: list[tuple[int, slice]], scaled: bool = True):
        """The LoRA updates (scaled) of `members`, whose row slices have the same length, in their order;
        `scaled=False`: their unscaled products as one tensor, members x tokens x out."""
        layers = [self._layers[m] for m, _ in members]
        adapters = [self._adapters[m] for m, _ in members]
        a_weights = [layer.lora_A[a].weight for layer, a in zip(layers, adapters)]  # r x in
        b_weights = [layer.lora_B[a].weight for layer, a in zip(layers, adapters)]  # out x r
        rank = max(w.shape[0] for w in a_weights)
        a = torch.stack([nn.functional.pad(w, (0, 0, 0, rank - w.shape[0])) for w in a_weights])
        b = torch.stack([nn.functional.pad(w, (0, rank - w.shape[1])) for w in b_weights])
        first, last = members[0][1], members[-1][1]
        if last.stop - first.start == sum(s.stop - s.start for _, s in members):  # contiguous rows: a view
            rows = x[first.start : last.stop].reshape(len(members), -1, x.shape[-1])
        else:
            rows = torch.stack([x[s] for _, s in members]).reshape(len(members), -1, x.shape[-1])
        rows = layers[0]._cast_input_dtype(rows, a.dtype)
        update = torch.bmm(torch.bmm(rows, a.transpose(1, 2)), b.transpose(1, 2))  # members x tokens x out
        if not scaled:
            return update
        shape = x[first].shape[:-1] + (b.shape[1],)
        return [
            update[i].view(shape) * layer.scaling[adapter]
            for i, (layer, adapter) in enumerate(zip(layers, adapters))
        ]

    def _whole(self, x: torch.Tensor, slices: list[tuple[int, slice]], args, kwargs) -> torch.Tensor | None:
        """Every member with rows shares the projection and is plain LoRA, all with the same row count (the
        common group: LoRA runs at one batch size): the shared projection plus the one batched update over
        every row, with no per-member slice or concatenation (whose backward would write each member's
        gradient slice into a zeroed tensor of the whole batch). None: another case."""
        if not BATCHED or len(slices) < 2:
            return None
        if any(self._bases[m] is not None or self._adapters[m] is None for m, _ in slices):
            return None
        if len({s.stop - s.start for _, s in slices}) > 1:
            return None
        shared = self.base(x, *args, **kwargs)
        updates = self._batched(x, slices, scaled=False)  # members x tokens x out
        layers = [self._layers[m] for m, _ in slices]
        scales = [layer.scaling[self._adapters[m]] for layer, (m, _) in zip(layers, slices)]
        # each member's scale as peft multiplies by a Python float: in float32 at least, rounded once to the
        # product's dtype (a bf16 scale tensor would round alpha / r itself)
        opmath = torch.promote_types(updates.dtype, torch.float32)
        scale = torch.tensor(scales, dtype=opmath, device=updates.device).view(-1, 1, 1)
        scaled = (updates * scale).to(updates.dtype).view(shared.shape)
        return (shared + scaled).to(shared.dtype)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        slices = list(self._rows.slices())
        whole = self._whole(x, slices, args, kwargs)
        if whole is not None:
            return whole
        shared = self.base(x, *args, **kwargs) if any(self._bases[m] is None for m, _ in slices) else None
        updates: dict[int, torch.Tensor] = {}
        if BATCHED:
            by_count: dict[int, list[tuple[int, slice]]] = {}
            for member, rows in slices:
                if self._adapters[member] is not None:
                    by_count.setdefault(rows.stop - rows.start, []).append((member, rows))
            for group in by_count.values():
                if len(group) > 1:
                    updates.update(zip((m for m, _ in group), self._batched(x, group)))
        dtype, pieces = None, []
        for member, rows in slices:
            own, layer = self._bases[member], self._layers[member]
            piece = shared[rows] if own is None else own(x[rows], *args, **kwargs)
            dtype = piece.dtype if dtype is None else dtype
            if member in updates:
                piece = piece + updates[member]
            elif layer is not None:
                piece = self._one(layer, piece, x[rows])
            pieces.append(piece)
        return torch.cat(pieces).to(dtype)


class RowRouter(nn.Module):
    """Each member's own copy of a module (a task head) on that member's rows."""

    def __init__(self, modules: list[nn.Module], rows: Rows):
        super().__init__()
        self._modules_of, self._rows = modules, rows  # not registered: the members own them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._modules_of[member](x[rows]) for member, rows in self._rows.slices()])


def _canonical(name: str) -> str:
    """A module or parameter name with peft's wrapper level removed: the same name on every member."""
    return name.replace(".base_layer", "")


def _is_lora(module: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return isinstance(module, LoraLayer)


def share_frozen(model: nn.Module, reference: nn.Module) -> int:
    """Point `model`'s frozen parameters at `reference`'s identical ones (one copy of the backbone for the
    group); a frozen parameter whose values differ keeps its own. Returns how many elements were shared."""
    theirs = {_canonical(n): p for n, p in reference.named_parameters() if not p.requires_grad}
    shared = 0
    for module_name, module in model.named_modules():
        for name, param in list(module._parameters.items()):
            if param is None or param.requires_grad:
                continue
            other = theirs.get(_canonical(f"{module_name}.{name}" if module_name else name))
            if other is not None and other is not param and other.shape == param.shape and other.equal(param):
                module._parameters[name] = other
                shared += param.numel()
    return shared


class _EncodeOnce:
    """An objective's `encode` that tokenises each list of examples once (the same list object: members that
    share their data) and hands every later caller the same encoded rows, which training only reads."""

    def __init__(self, encode):
        self.encode, self.done = encode, []  # (examples, encoded): the examples held, so no id is reused

    def __call__(self, examples: list[dict]) -> list[dict]:
        for seen, encoded in self.done:
            if seen is examples:
                return encoded
        encoded = self.encode(examples)
        self.done.append((examples, encoded))
        return encoded


def share_inputs(prepared, reference) -> bool:
    """Point a member's data and objective at `reference`'s (petsweep.run.app.Prepared, both) where they are
    equal, so that the group tokenises each split once (a member's tokenisation of the whole train split cost
    it about as much as 15 steps at 4 x 32 on a CPU thread). A group's members are equal in backbone and task
    (petsweep.run.group.check_members), so their objectives encode alike; their examples are compared all the
    same (a k-shot train split is drawn with the run's seed). Returns whether they were shared."""
    mine, theirs = prepared.objective, reference.objective
    alike = (
        type(mine) is type(theirs)
        and mine.task == theirs.task
        and getattr(mine.tokenizer, "name_or_path", None) == getattr(theirs.tokenizer, "name_or_path", None)
        and len(mine.tokenizer) == len(theirs.tokenizer)
        and prepared.data == reference.data
    )
    if not alike:
        return False
    if not isinstance(theirs.encode, _EncodeOnce):
        theirs.encode = _EncodeOnce(theirs.encode)
    prepared.data, prepared.objective = reference.data, theirs
    return True


def _same_objects(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def fuse(models: list[nn.Module], rows: Rows) -> nn.Module:
    """One model over all members' rows, built on the first member's module tree (sharing its tensors)."""
    first = models[0]
    fused = copy.deepcopy(first, memo={id(p): p for p in first.parameters()})
    lora_paths = sorted({n for m in models for n, mod in m.named_modules() if _is_lora(mod)})
    for path in lora_paths:
        mods = [m.get_submodule(path) for m in models]
        layers = [mod if _is_lora(mod) else None for mod in mods]
        bases = [mod.base_layer if _is_lora(mod) else mod for mod in mods]
        # the shared projection: a frozen one (a BitFit member trains its own bias in it)
        frozen = [b for b in bases if not any(p.requires_grad for p in b.parameters())]
        shared = (frozen or bases)[0]
        mine = list(shared.parameters())
        routed = [None if _same_objects(list(b.parameters()), mine) else b for b in bases]
        fused.set_submodule(path, FusedLoRA(shared, routed, layers, rows))
    inside_lora = tuple(f"{p}." for p in lora_paths)
    for path, module in first.named_modules():
        if not path or path.startswith(inside_lora) or path in lora_paths or not module._parameters:
            continue
        copies = [m.get_submodule(path) for m in models]
        mine = list(module._parameters.values())
        if any(not _same_objects(list(c._parameters.values()), mine) for c in copies[1:]):
            fused.set_submodule(path, RowRouter(copies, rows))
    return fused


def concat_inputs(batches: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """The members' model inputs as one batch: rows in member order, right-padded to the longest."""
    width = max(b["input_ids"].shape[1] for b in batches)

    def padded(key: str, value: int) -> torch.Tensor:
        parts = [
            nn.functional.pad(b[key], (0, width - b[key].shape[1]), value=value) for b in batches if key in b
        ]
        return torch.cat(parts)

    return {"input_ids": padded("input_ids", pad_id), "attention_mask": padded("attention_mask", 0)}


def member_losses(logits: torch.Tensor, labels: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each member's loss on its rows (in order), as its model computes it alone: cross-entropy, or MSE for
    one output."""
    losses, start = [], 0
    for mine in labels:
        rows = logits[start : start + len(mine)]
        start += len(mine)
        if rows.shape[-1] == 1:
            losses.append(nn.functional.mse_loss(rows.squeeze(-1).float(), mine.float()))
        else:
            losses.append(nn.functional.cross_entropy(rows.float(), mine))
    return losses


@dataclass
class Member:
    """One run of a fused group while it trains: its Training, the batch of its current step, its end."""

    name: str
    training: object  # petsweep.train.loop.Training
    batch: dict | None = None
    tokens: int = 0
    loss: torch.Tensor | None = None
    outcome: dict | None = None
    error: BaseException | None = None
    trace: str = ""

    @property
    def active(self) -> bool:
        return self.outcome is None and self.error is None

    def begin(self) -> None:
        self.training.begin_step()
        self.batch, self.tokens = self.training.micro_batch(0)

    def account(self) -> None:
        self.training.account(self.loss.item(), self.tokens)

    def update(self) -> None:
        """Its own clipping, optimizer and schedule step."""
        self.training.stepper.micro_step(boundary=True)

    def end(self, took: float) -> None:
        """Its step counted as the group's (`took`: from the first member's batch to the last member's
        update), then evaluation and checkpoints on its own schedule."""
        self.training.end_step(took)
        self.batch = self.loss = None
        if self.training.finished:
            self.finish()

    def finish(self) -> None:
        self.outcome = self.training.finish()


def train_together(
    members: list[Member], models: list[nn.Module], pad_id: int, in_member, on_end=lambda i: None
) -> None:
    """Step every member until each has finished or failed; `in_member(i)` is the context in which member
    i's own work runs (its log), and `on_end(i)` is called in it as soon as member i ends (its outcome or
    error set), while the others go on. A member that fails (NaN, an error in its evaluation) leaves alone;
    an error in the shared forward or backward ends every member still training with that error."""
    reported: set[int] = set()

    def report_ends() -> list[int]:
        ended = [i for i, m in enumerate(members) if not m.active and i not in reported]
        for i in ended:
            reported.add(i)
            with in_member(i):
                on_end(i)
        return ended

    def fail_all(err: BaseException, trace: str) -> None:
        for m in members:
            if m.active:
                m.error, m.trace = err, trace
        report_ends()

    def attempt(i: int, action) -> bool:
        with in_member(i):
            try:
                action()
                return True
            except Exception as err:
                members[i].error, members[i].trace = err, traceback.format_exc()
                return False

    rows = Rows()
    try:
        fused = fuse(models, rows).to(members[0].training.device)  # its buffers (position ids) were copied
    except Exception as err:
        fail_all(err, traceback.format_exc())
        return
    for i, member in enumerate(members):
        if member.training.finished:  # resumed at its last step
            attempt(i, member.finish)
    report_ends()
    while active := [i for i, m in enumerate(members) if m.active]:
        started = time.perf_counter()
        stepping = [i for i in active if attempt(i, members[i].begin)]
        if not stepping:
            report_ends()
            continue
        rows.counts = [len(m.batch["labels"]) if i in stepping else 0 for i, m in enumerate(members)]
        try:
            with members[stepping[0]].training.autocast():
                logits = fused(**concat_inputs([members[i].batch for i in stepping], pad_id)).logits
            losses = member_losses(logits, [members[i].batch["labels"] for i in stepping])
            for i, loss in zip(stepping, losses):
                members[i].loss = loss
            stepping = [i for i in stepping if attempt(i, members[i].account)]  # a NaN fails its run alone
            if stepping:
                torch.stack([members[i].loss for i in stepping]).sum().backward()
        except Exception as err:  # the shared step: no member can go on without it
            log.error("the group's shared step failed: %s: %s", type(err).__name__, err)
            fail_all(err, traceback.format_exc())
            break
        stepping = [i for i in stepping if attempt(i, members[i].update)]
        # every member's step took the group's step: not the evaluations of those that end theirs first
        took = time.perf_counter() - started
        for i in stepping:
            attempt(i, functools.partial(members[i].end, took))
        if ended := report_ends():
            still = sum(m.active for m in members)
            names = ", ".join(members[i].name for i in ended)
            log.info("%s left the group; %d of %d still train", names, still, len(members))
