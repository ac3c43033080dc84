"""How a task is cast onto a backbone family: batching, training loss and predictions.

- Encoders: a classification (or regression) head on the pooled output.
- Encoder-decoders and decoders (text-to-text): trained to produce the verbalised label; classification
  predicts the label word with the highest log-likelihood (rank classification, no free generation),
  generation tasks decode greedily: under task.decoding=greedy (the default) every method through
  methods/layers/decoding.py's greedy search of its own forward; under model_default (runs recorded before the
  key) through the model's generate(), which applies its generation_config (BART: beams, forced EOS, ...).
"""

from __future__ import annotations

import torch
from torch import nn

from petsweep.methods.layers.decoding import greedy_decode
from petsweep.tasks import TaskData, TaskSpec

IGNORE = -100


def _pad(rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(r) for r in rows)
    padded = [([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows]
    return torch.tensor(padded, dtype=torch.long)


class Objective:
    """Pre-tokenises examples once, then turns lists of them into batches, losses and predictions."""

    def __init__(self, task: TaskSpec, data: TaskData, tokenizer):
        self.task, self.tokenizer = task, tokenizer
        self.pad_id = tokenizer.pad_token_id
        self.label_words = data.label_words
        self.synced_generation = False  # ZeRO-3 on several ranks: generate steps until every rank is done

    def encode(self, examples: list[dict]) -> list[dict]:
        raise NotImplementedError

    def train_batch(self, encoded: list[dict]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    @torch.no_grad()
    def predict(self, model: nn.Module, encoded: list[dict], batch_size: int, device: torch.device) -> list:
        """Each example's prediction: a class id, a regression's value, or a generated text."""
        raise NotImplementedError

    @torch.no_grad()
    def scores(
        self, model: nn.Module, encoded: list[dict], batch_size: int, device: torch.device
    ) -> torch.Tensor:
        """Each example's raw output, from which `predict` picks (a row per example, float32)."""
        raise NotImplementedError


class ClassifierObjective(Objective):
    """Encoder + head: cross-entropy for classes, MSE for regression (num_labels=1)."""

    def encode(self, examples):
        ids = self.tokenizer([e["text"] for e in examples], truncation=True, max_length=self.task.max_length)
        return [{"input_ids": i, "label": e["label"]} for i, e in zip(ids["input_ids"], examples)]

    def _inputs(self, encoded):
        input_ids = _pad([e["input_ids"] for e in encoded], self.pad_id)
        return {
            "input_ids": input_ids,
            "attention_mask": _pad([[1] * len(e["input_ids"]) for e in encoded], 0),
        }

    def train_batch(self, encoded):
        dtype = torch.float if self.task.kind == "regression" else torch.long
        return {**self._inputs(encoded), "labels": torch.tensor([e["label"] for e in encoded], dtype=dtype)}

    @torch.no_grad()
    def scores(self, model, encoded, batch_size, device):
        """The head's logits (a regression's value: one column)."""
        logits = []
        for start in range(0, len(encoded), batch_size):
            batch = {k: v.to(device) for k, v in self._inputs(encoded[start : start + batch_size]).items()}
            logits.append(model(**batch).logits.float())
        return torch.cat(logits) if logits else torch.zeros(0, self.task.num_labels)

    def predict(self, model, encoded, batch_size, device):
        logits = self.scores(model, encoded, batch_size, device)
        return (logits.squeeze(-1) if self.task.kind == "regression" else logits.argmax(-1)).tolist()


class TextToTextObjective(Objective):
    """Encoder-decoder and decoder backbones: the target is text (a label word or an answer)."""

    def __init__(self, task, data, tokenizer, decoder_only: bool):
        super().__init__(task, data, tokenizer)
        self.decoder_only = decoder_only
        self.eos_id = tokenizer.eos_token_id
        self.candidates = [self._target_ids(w) for w in self.label_words]
        self.source_budget = self._source_budget()

    def _target_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(" " + text if self.decoder_only else text, add_special_tokens=False)["input_ids"]
        return ids[: self.task.target_max_length] + [self.eos_id]

    def _source_budget(self) -> int:
        """Source tokens a decoder keeps: max_length minus the LONGEST target it may get, never the gold one.

        The budget is the same for every candidate label and for training and evaluation, so the input's
        length cannot reveal which label is gold.
        """
        if self.task.kind == "classification":
            longest = max(len(c) for c in self.candidates)
        else:
            longest = self.task.target_max_length + 1  # answer tokens + eos
        return max(1, self.task.max_length - longest)

    def encode(self, examples):
        special = not self.decoder_only
        ids = self.tokenizer([e["text"] for e in examples], add_special_tokens=special)["input_ids"]
        out = []
        for source, e in zip(ids, examples):
            target = (
                self.candidates[e["label"]]
                if self.task.kind == "classification"
                else self._target_ids(e["target"])
            )
            out.append({**e, "source": self._fit_source(source), "target": target})
        return out

    def _fit_source(self, source: list[int]) -> list[int]:
        if not self.decoder_only:
            return source[: self.task.max_length]
        # A decoder reads prompt then answer: keep the prompt's end, where a template puts its question.
        return source[-self.source_budget :]

    def _pair_batch(self, sources: list[list[int]], targets: list[list[int]]) -> dict[str, torch.Tensor]:
        if not self.decoder_only:
            return {
                "input_ids": _pad(sources, self.pad_id),
                "attention_mask": _pad([[1] * len(s) for s in sources], 0),
                "labels": _pad(targets, IGNORE),
            }
        rows = [s + t for s, t in zip(sources, targets)]
        labels = [[IGNORE] * len(s) + t for s, t in zip(sources, targets)]
        return {
            "input_ids": _pad(rows, self.pad_id),
            "attention_mask": _pad([[1] * len(r) for r in rows], 0),
            "labels": _pad(labels, IGNORE),
        }

    def train_batch(self, encoded):
        return self._pair_batch([e["source"] for e in encoded], [e["target"] for e in encoded])

    def _sequence_logprob(self, model, batch) -> torch.Tensor:
        """Each row's log-probability of its target tokens. A decoder is called without the labels, whose
        loss (a cross-entropy over every position and the whole vocabulary) nothing here reads, and the
        log-softmax is taken at the target positions alone: each row's is the same as taking it everywhere,
        at a fraction of the cost (scoring a tiny BLOOM's labels: ~45% of it)."""
        labels = batch["labels"]
        if self.decoder_only:  # position t predicts token t + 1
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1]
            labels = labels[:, 1:]
        else:  # the labels give the decoder its inputs (shifted right)
            logits = model(**batch).logits
        mask = labels != IGNORE
        token_logprob = torch.zeros(labels.shape, device=logits.device)
        at_targets = torch.log_softmax(logits[mask].float(), -1)
        token_logprob[mask] = at_targets.gather(-1, labels[mask].unsqueeze(-1)).squeeze(-1)
        return token_logprob.sum(-1)

    @torch.no_grad()
    def scores(self, model, encoded, batch_size, device):
        """Each label word's log-probability as the target (a column per class)."""
        rows = []
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            per_label = []
            for candidate in self.candidates:
                batch = self._pair_batch([e["source"] for e in chunk], [candidate] * len(chunk))
                per_label.append(self._sequence_logprob(model, {k: v.to(device) for k, v in batch.items()}))
            rows.append(torch.stack(per_label, -1))
        return torch.cat(rows) if rows else torch.zeros(0, len(self.candidates))

    @torch.no_grad()
    def predict(self, model, encoded, batch_size, device):
        if self.task.kind == "generation":
            return self._generate(model, encoded, batch_size, device)
        return self.scores(model, encoded, batch_size, device).argmax(-1).tolist()

    def _generate(self, model, encoded, batch_size, device):
        outputs = []
        for start in range(0, len(encoded), batch_size):
            sources = [e["source"] for e in encoded[start : start + batch_size]]
            # decoders continue the prompt, so pad on the left; encoder-decoders pad on the right
            input_ids = _pad(sources, self.pad_id, left=self.decoder_only).to(device)
            mask = _pad([[1] * len(s) for s in sources], 0, left=self.decoder_only).to(device)
            if self.task.decoding == "greedy":  # every method: plain greedy search through its forward
                generated = greedy_decode(
                    model,
                    input_ids,
                    mask,
                    encoder_decoder=not self.decoder_only,
                    max_new_tokens=self.task.target_max_length,
                    pad_token_id=self.pad_id,
                    synced_gpus=self.synced_generation,
                )
            else:  # model_default: the model's generate() and generation_config (runs before task.decoding)
                generated = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    do_sample=False,
                    max_new_tokens=self.task.target_max_length,
                    pad_token_id=self.pad_id,
                    synced_gpus=self.synced_generation,
                )
            if self.decoder_only:
                generated = generated[:, input_ids.shape[1] :]
            outputs += self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        return [o.strip() for o in outputs]


def make_objective(family: str, task: TaskSpec, data: TaskData, tokenizer) -> Objective:
    if family == "encoder":
        return ClassifierObjective(task, data, tokenizer)
    return TextToTextObjective(task, data, tokenizer, decoder_only=family == "decoder")
