"""From a task's raw rows to examples: splits, k-shot subsets, templates and verbalizer labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from petsweep.errors import DataError
from petsweep.tasks.metrics import random_guess_score
from petsweep.tasks.sources import SOURCES
from petsweep.tasks.spec import TaskSpec


@dataclass
class TaskData:
    """Prepared examples. Each example is {"text": str, "label": int | float} or {"text", "target", "answers"}.

    Attributes:
        train, dev, test: the splits (dev selects the best checkpoint, test gives the result).
        train_eval: a fixed subset of train, scored at the end for the generalisation gap.
        label_words: verbalizer strings of classes 0..C-1 (empty for regression and generation).
        random_guess: the main metric of random guessing on the test split.
    """

    train: list[dict]
    dev: list[dict]
    test: list[dict]
    train_eval: list[dict]
    label_words: list[str]
    random_guess: float


def prepare_task(spec: TaskSpec, seed: int) -> TaskData:
    """Load rows with the task's source and turn them into examples (see TaskData)."""
    raw = SOURCES.get(spec.source, key="task.source")(spec)
    if spec.source == "files" and spec.kind == "classification" and not spec.label_words:
        spec.label_words = sorted({str(r[spec.label_field]) for r in raw.get(spec.splits["train"], [])})
    splits = _assign_splits(spec, raw)
    if spec.k_shot:
        splits["train"] = _k_shot(splits["train"], spec, seed)
    if spec.max_train_examples:
        splits["train"] = splits["train"][: spec.max_train_examples]
    for name in ("dev", "test"):
        if spec.max_eval_examples:
            splits[name] = splits[name][: spec.max_eval_examples]
    examples = {name: [_example(spec, row, name, i) for i, row in enumerate(rows)] for name, rows in splits.items()}
    if not examples["train"] or not examples["test"]:
        raise DataError(f"task={spec.name}: empty train or test split; check task.splits / task.files")
    rng = np.random.default_rng([spec.split_seed, 1])
    subset = sorted(rng.permutation(len(examples["train"]))[: spec.train_eval_size].tolist())
    return TaskData(
        train=examples["train"],
        dev=examples["dev"],
        test=examples["test"],
        train_eval=[examples["train"][i] for i in subset],
        label_words=spec.verbalizer() if spec.kind == "classification" else [],
        random_guess=random_guess_score(spec, examples["test"], examples["train"]),
    )


def _assign_splits(spec: TaskSpec, raw: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Map source splits to train/dev/test, carving missing ones from train with the fixed split seed."""
    train_name = spec.splits.get("train", "train")
    if train_name not in raw:
        raise DataError(f"task.splits.train={train_name!r}: the source has splits {sorted(raw)}")
    pool = list(raw[train_name])
    order = np.random.default_rng([spec.split_seed, 0]).permutation(len(pool))
    pool = [pool[i] for i in order]
    out = {}
    for name, size in (("test", spec.test_size), ("dev", spec.dev_size)):
        source_name = spec.splits.get(name)
        if source_name is not None:
            if source_name not in raw:
                raise DataError(f"task.splits.{name}={source_name!r}: the source has splits {sorted(raw)}")
            out[name] = list(raw[source_name])
        else:
            size = size if size is not None else len(pool) // 5
            out[name], pool = pool[:size], pool[size:]
    out["train"] = pool
    return out


def _k_shot(rows: list[dict], spec: TaskSpec, seed: int) -> list[dict]:
    """k rows per class, drawn with the run seed, in a seeded order (class-balanced few-shot).

    Tasks without classes (regression, generation) keep k rows in all.
    """
    rng = np.random.default_rng([seed, 2])
    if spec.kind != "classification":
        return [rows[i] for i in rng.permutation(len(rows))[: spec.k_shot]]
    labels = [_label_id(spec, r, "train", i) for i, r in enumerate(rows)]
    chosen = []
    for cls in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == cls]
        chosen += rng.choice(members, size=min(spec.k_shot, len(members)), replace=False).tolist()
    return [rows[i] for i in rng.permutation(sorted(chosen))]


def _label_id(spec: TaskSpec, row: dict, split: str, index: int) -> int:
    """A row's class id: ints are taken as ids, strings are looked up among the label words."""
    value = row[spec.label_field]
    words = [str(w) for w in spec.label_words]
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, (int, np.integer)) and 0 <= value < len(words):
        return int(value)
    if str(value) in words:
        return words.index(str(value))
    if str(value).lstrip("-").isdigit() and 0 <= int(value) < len(words):
        return int(value)
    raise DataError(
        f"task={spec.name} split {split} row {index + 1}: label {value!r} is not one of the verbalizer's "
        f"labels {words} (task.label_words)"
    )


def _example(spec: TaskSpec, row: dict, split: str, index: int) -> dict:
    try:
        text = spec.template_string().format(**{f: row[f] for f in spec.fields})
    except KeyError as err:
        raise DataError(f"task={spec.name} split {split}: rows have no field {err}; task.fields={spec.fields}") from None
    if spec.kind == "classification":
        return {"text": text, "label": _label_id(spec, row, split, index)}
    if spec.kind == "regression":
        return {"text": text, "label": float(row[spec.label_field])}
    answers = row[spec.label_field]
    answers = [str(a) for a in answers] if isinstance(answers, (list, tuple)) else [str(answers)]
    return {"text": text, "target": answers[0], "answers": answers}
