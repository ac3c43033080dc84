"""From a task's raw rows to examples: splits, k-shot subsets, templates and verbalizer labels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from petsweep.spec.errors import DataError
from petsweep.spec.task import TaskSpec
from petsweep.tasks import splits as hygiene
from petsweep.tasks.metrics import random_guess_score
from petsweep.tasks.sources import SOURCES


@dataclass
class TaskData:
    """Prepared examples, each {"text": str, "label": int | float} or {"text", "target", "answers"}.

    Attributes:
        train, dev, test: the splits (dev selects the best checkpoint, test gives the result).
        train_eval: a fixed subset of train, scored at the end for the generalisation gap.
        label_words: verbalizer strings of classes 0..C-1 (empty for regression and generation).
        random_guess: the main metric of random guessing on the test split.
        stats: what the numbers were computed on (split sizes, class counts, repeats removed, the label
            mapping); recorded in result.json as `data`.
    """

    train: list[dict]
    dev: list[dict]
    test: list[dict]
    train_eval: list[dict]
    label_words: list[str]
    random_guess: float
    stats: dict = field(default_factory=dict)


def prepare_task(spec: TaskSpec, seed: int) -> TaskData:
    """Load rows with the task's source and turn them into examples (see TaskData)."""
    raw = SOURCES.get(spec.source, key="task.source")(spec)
    if spec.source == "files" and spec.kind == "classification" and not spec.label_words:
        spec.label_words = _words_from_data(raw.get(spec.splits["train"], []), spec.label_field)
    rows, removed = _assign_splits(spec, raw)
    examples = {
        name: [_example(spec, row, name, i) for i, row in enumerate(split)] for name, split in rows.items()
    }
    stratify = spec.kind == "classification"
    if spec.k_shot:
        examples["train"] = _k_shot(examples["train"], spec, seed)
    # caps are seeded (split seed), stratified samples: never the first rows of a source sorted by label
    examples["train"] = hygiene.sample(
        examples["train"], spec.max_train_examples, [spec.split_seed, 4], stratify
    )
    for offset, name in enumerate(("dev", "test")):
        examples[name] = hygiene.sample(
            examples[name], spec.max_eval_examples, [spec.split_seed, 5 + offset], stratify
        )
    if not examples["train"] or not examples["test"]:
        raise DataError(
            f"task={spec.name}: empty train or test split after removing {removed['repeats_removed']} "
            f"repeated texts and {removed['overlap_removed']} texts of another split; check task.splits "
            f"/ task.files"
        )
    rng = np.random.default_rng([spec.split_seed, 1])
    subset = sorted(rng.permutation(len(examples["train"]))[: spec.train_eval_size].tolist())
    return TaskData(
        train=examples["train"],
        dev=examples["dev"],
        test=examples["test"],
        train_eval=[examples["train"][i] for i in subset],
        label_words=spec.verbalizer() if spec.kind == "classification" else [],
        random_guess=random_guess_score(spec, examples["test"], examples["train"]),
        stats=_stats(spec, examples, removed),
    )


def _words_from_data(rows: list[dict], label_field: str) -> list[str]:
    """A local file's classes: its distinct label strings, in numeric order if all are integers."""
    words = {str(r[label_field]) for r in rows}
    numeric = all(w.lstrip("-").isdigit() for w in words)
    return sorted(words, key=lambda w: (int(w), w) if numeric else (0, w))


def _stats(spec: TaskSpec, examples: dict[str, list[dict]], removed: dict[str, int]) -> dict:
    stats = {"sizes": {name: len(split) for name, split in examples.items()}, **removed}
    if spec.kind == "classification":
        stats["label_format"] = spec.label_format
        stats["label_map"] = {str(w): i for i, w in enumerate(spec.label_words)}
        stats["class_counts"] = {
            name: [Counter(e["label"] for e in split).get(i, 0) for i in range(len(spec.label_words))]
            for name, split in examples.items()
        }
    return stats


def _assign_splits(
    spec: TaskSpec, raw: dict[str, list[dict]]
) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Map source splits to train/dev/test, carving missing ones from train with the fixed split seed.

    Repeated texts (by task.dedupe_fields) are removed from train before anything is carved, and no text of
    the test split is kept in dev or train, nor one of dev in train; the numbers removed are returned. Where
    dedupe_fields are not what the model reads (task.fields: bbc_headlines splits by article like bbc_news and
    reads the headline), task.dedupe_inputs also drops the dev and train rows whose input is a test input, and
    the train rows whose input is a dev input (different articles under one headline).
    """
    fields = list(spec.dedupe_fields or spec.fields)
    train_name = spec.splits.get("train", "train")
    if train_name not in raw:
        raise DataError(f"task.splits.train={train_name!r}: the source has splits {sorted(raw)}")
    given = {}
    for name in ("test", "dev"):
        source_name = spec.splits.get(name)
        if source_name is not None:
            if source_name not in raw:
                raise DataError(f"task.splits.{name}={source_name!r}: the source has splits {sorted(raw)}")
            given[name] = list(raw[source_name])
    removed = {"repeats_removed": 0, "overlap_removed": 0}
    if "dev" in given and "test" in given:
        given["dev"], dropped = hygiene.drop_repeats(
            given["dev"], fields, hygiene.keys_of(given["test"], fields)
        )
        removed["overlap_removed"] += dropped
    pool, repeats = hygiene.drop_repeats(list(raw[train_name]), fields)
    removed["repeats_removed"] = repeats
    held_out = set().union(*(hygiene.keys_of(rows, fields) for rows in given.values()))
    before = len(pool)
    pool = [row for row in pool if hygiene.text_key(row, fields) not in held_out]
    removed["overlap_removed"] += before - len(pool)
    order = np.random.default_rng([spec.split_seed, 0]).permutation(len(pool))
    pool = [pool[i] for i in order]
    out = {}
    for name, size in (("test", spec.test_size), ("dev", spec.dev_size)):
        if name in given:
            out[name] = given[name]
        else:
            size = size if size is not None else len(pool) // 5
            out[name], pool = pool[:size], pool[size:]
    out["train"] = pool
    inputs = list(spec.fields)
    if spec.dedupe_inputs and inputs != fields:  # splits follow dedupe_fields; no input crosses them either
        held_out = set()
        for name in ("test", "dev", "train"):
            before = len(out[name])
            out[name] = [row for row in out[name] if hygiene.text_key(row, inputs) not in held_out]
            removed["overlap_removed"] += before - len(out[name])
            held_out |= hygiene.keys_of(out[name], inputs)
    return out, removed


def _k_shot(examples: list[dict], spec: TaskSpec, seed: int) -> list[dict]:
    """k examples per class, drawn with the run seed, in a seeded order (class-balanced few-shot).

    Tasks without classes (regression, generation) keep k examples in all.
    """
    rng = np.random.default_rng([seed, 2])
    if spec.kind != "classification":
        return [examples[i] for i in rng.permutation(len(examples))[: spec.k_shot]]
    chosen = []
    for cls in sorted({e["label"] for e in examples}):
        members = [i for i, e in enumerate(examples) if e["label"] == cls]
        chosen += rng.choice(members, size=min(spec.k_shot, len(members)), replace=False).tolist()
    return [examples[i] for i in rng.permutation(sorted(chosen))]


def _label_id(spec: TaskSpec, row: dict, split: str, index: int) -> int:
    """A row's class id. Labels are words looked up among task.label_words, unless task.label_format=index
    says they are class ids 0..C-1 (integers, booleans or digit strings); a value that is neither is an
    error."""
    value = row[spec.label_field]
    words = [str(w) for w in spec.label_words]
    if spec.label_format == "index":
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, (int, np.integer)) and 0 <= value < len(words):
            return int(value)
        expected = f"a class id 0..{len(words) - 1} (task.label_format=index)"
    else:
        if str(value) in words:
            return words.index(str(value))
        expected = (
            f"one of the label words {words} (task.label_words; task.label_format=index reads class ids)"
        )
    raise DataError(f"task={spec.name} split {split} row {index + 1}: label {value!r} is not {expected}")


def _example(spec: TaskSpec, row: dict, split: str, index: int) -> dict:
    try:
        text = spec.template_string().format(**{f: row[f] for f in spec.fields})
    except KeyError as err:
        raise DataError(
            f"task={spec.name} split {split}: rows have no field {err}; task.fields={spec.fields}"
        ) from None
    if spec.kind == "classification":
        return {"text": text, "label": _label_id(spec, row, split, index)}
    if spec.kind == "regression":
        return {"text": text, "label": float(row[spec.label_field])}
    answers = row[spec.label_field]
    answers = [str(a) for a in answers] if isinstance(answers, (list, tuple)) else [str(answers)]
    return {"text": text, "target": answers[0], "answers": answers}
