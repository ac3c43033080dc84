"""Split hygiene: capped splits are stratified samples, no text is in two splits, decoder inputs do not depend
on the gold label, local integer labels are words, and transfer needs matching label sets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from petsweep import CONF_DIR
from petsweep.compose import compose
from petsweep.model.objectives import TextToTextObjective
from petsweep.model.resolve import resolve_run
from petsweep.spec.errors import DataError
from petsweep.tasks import TaskSpec, prepare_task
from petsweep.tasks.splits import text_key


def _task(*overrides):
    return resolve_run(compose(list(overrides))).task


def _task_alone(*overrides) -> TaskSpec:
    """The task node as its spec, whatever backbone would run it (generation needs a text-to-text one)."""
    return TaskSpec(**OmegaConf.to_container(compose(list(overrides)).task, resolve=True))


def _capped_tasks() -> list[str]:
    """Every shipped task whose YAML caps a split (found from the YAMLs, so a new capped task is covered)."""
    names = []
    for path in sorted((CONF_DIR / "task").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        if body.get("max_eval_examples") or body.get("max_train_examples"):
            names.append(path.stem)
    return names


def test_some_shipped_task_is_capped():
    assert "imdb" in _capped_tasks()


@pytest.mark.parametrize("name", _capped_tasks())
def test_capped_splits_of_a_source_sorted_by_label_keep_its_label_mix(name, tmp_path):
    """IMDB on the hub is stored sorted by label: the first N test rows of it are all negative.

    Each capped task reads a local copy of its dataset (load_dataset on a dir of JSONL files) laid out
    sorted by label, three times the cap per split.
    """
    spec = _task_alone(f"task={name}")
    generation = spec.kind == "generation"
    classes = 1 if generation else len(spec.label_words)
    per_class = 3 * (spec.max_eval_examples or spec.max_train_examples) // classes
    for split in set(spec.splits.values()):
        rows = [
            {
                **{f: f"{split} {label} {i} text" for f in spec.fields},
                spec.label_field: f"summary {i}" if generation else label,
            }
            for label in range(classes)
            for i in range(per_class)
        ]
        _jsonl(tmp_path / f"{split}.jsonl", rows)
    overrides = (f"task={name}", f"task.hf_path={tmp_path}", "task.hf_name=null")
    data = prepare_task(_task_alone(*overrides), seed=0)
    for split in ("dev", "test", "train"):
        examples = getattr(data, split)
        if split == "test" and spec.max_eval_examples:
            assert len(examples) == spec.max_eval_examples
        capped = (
            spec.max_eval_examples
            if split == "test"
            else spec.max_train_examples
            if split == "train"
            else None
        )
        if generation:  # no classes: a seeded sample from the whole split, not its first rows
            assert not capped or max(int(e["text"].split()[2]) for e in examples) >= len(examples)
            continue
        counts = Counter(e["label"] for e in examples)
        assert set(counts) == set(range(classes)), (split, counts)
        if capped:  # a stratified sample of a balanced source is balanced to one example
            assert max(counts.values()) - min(counts.values()) <= 1, (split, counts)
    again = prepare_task(_task_alone(*overrides), seed=7)  # seeded by the split seed, not the run seed
    assert [e["text"] for e in again.test] == [e["text"] for e in data.test]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_caps_are_stratified_on_a_file_sorted_by_label(tmp_path):
    # 3:1, sorted by label
    rows = [{"inputs": f"text {i}", "outputs": "neg" if i < 300 else "pos"} for i in range(400)]
    path = _jsonl(tmp_path / "sorted.jsonl", rows)
    test = _jsonl(tmp_path / "sorted_test.jsonl", [{**r, "inputs": "held out " + r["inputs"]} for r in rows])
    files = ("task=local", f"task.files.train={path}", f"task.files.test={test}", "task.dev_size=100")
    data = prepare_task(_task(*files, "task.max_eval_examples=40", "task.max_train_examples=80"), 0)
    assert Counter(e["label"] for e in data.test) == {0: 30, 1: 10}  # the first 40 would all be neg
    pool = Counter(e["label"] for e in prepare_task(_task(*files), 0).train)  # train after dev was carved
    assert Counter(e["label"] for e in data.train) == {
        c: round(80 * n / pool.total()) for c, n in pool.items()
    }


def test_carved_splits_share_no_text_and_record_what_was_removed(tmp_path):
    base = [{"inputs": f"item number {i}", "outputs": ["neg", "pos"][i % 2]} for i in range(200)]
    repeats = [
        {"inputs": f"  ITEM   number {i} ", "outputs": ["neg", "pos"][i % 2]} for i in range(0, 200, 4)
    ]
    train = _jsonl(tmp_path / "train.jsonl", base + repeats)  # 50 repeats differing in case and spacing
    # 10 of these are in train too
    test = _jsonl(
        tmp_path / "test.jsonl",
        [{"inputs": f"item number {i}", "outputs": ["neg", "pos"][i % 2]} for i in range(190, 230)],
    )
    data = prepare_task(
        _task("task=local", f"task.files.train={train}", f"task.files.test={test}", "task.dev_size=30"),
        seed=0,
    )
    assert data.stats["repeats_removed"] == 50 and data.stats["overlap_removed"] == 10
    keys = {
        name: [text_key({"t": e["text"]}, ["t"]) for e in getattr(data, name)]
        for name in ("train", "dev", "test")
    }
    assert not set(keys["train"]) & set(keys["test"]) and not set(keys["train"]) & set(keys["dev"])
    assert not set(keys["dev"]) & set(keys["test"]) and len(set(keys["train"])) == len(keys["train"])
    assert len(data.train) == 200 - 10 - 30


def test_bbc_news_test_articles_are_not_in_train_and_headlines_split_alike():
    news, headlines = prepare_task(_task(), 0), prepare_task(_task("task=bbc_headlines"), 0)
    train = {text_key(e, ["text"]) for e in news.train}
    assert not any(text_key(e, ["text"]) in train for e in news.test + news.dev)
    assert news.stats["repeats_removed"] == headlines.stats["repeats_removed"] == 101
    assert news.stats["sizes"]["test"] == headlines.stats["sizes"]["test"]
    assert [e["label"] for e in news.test] == [e["label"] for e in headlines.test]
    # the same articles, in order
    assert all(h["text"] in n["text"] for n, h in zip(news.test, headlines.test))
    # 12 train articles carry a test headline, 3 a dev one: dropped from headlines' train only
    assert headlines.stats["sizes"]["train"] == news.stats["sizes"]["train"] - 15


def _offline_tasks() -> list[str]:
    """Every shipped task whose data ships with the install (no hub download)."""
    return [
        p.stem
        for p in sorted((CONF_DIR / "task").glob("*.yaml"))
        if _task_alone(f"task={p.stem}").source not in ("hf", "files")
    ]


@pytest.mark.parametrize("name", _offline_tasks())
def test_no_test_input_is_in_train_or_dev(name):
    """What the model reads (its input text, normalised) of a test example is in no train or dev example, nor
    a dev one in train: bbc_headlines splits by article like bbc_news, and articles share headlines."""
    data = prepare_task(_task(f"task={name}"), 0)
    keys = {
        split: [text_key(e, ["text"]) for e in getattr(data, split)] for split in ("train", "dev", "test")
    }
    assert not set(keys["test"]) & (set(keys["train"]) | set(keys["dev"]))
    assert not set(keys["dev"]) & set(keys["train"])


def test_shipped_tasks_loaded_offline_include_both_bbc_tasks():
    assert {"bbc_news", "bbc_headlines"} <= set(_offline_tasks())


class _Tokenizer:
    """Whitespace tokens; enough to check which tokens a decoder keeps."""

    pad_token_id, eos_token_id = 0, 1

    def __call__(self, texts, add_special_tokens=True, **_):
        if isinstance(texts, str):
            return {"input_ids": [hash(w) % 1000 + 2 for w in texts.split()]}
        return {"input_ids": [[hash(w) % 1000 + 2 for w in t.split()] for t in texts]}


@pytest.mark.parametrize("decoder_only", [True, False])
def test_text_to_text_source_does_not_depend_on_the_gold_label(decoder_only):
    spec = _task("task.max_length=12")
    spec.label_words = ["no", "not at all related to the rest"]  # candidates of 2 and 8 tokens (+ eos)
    data = prepare_task(_task("task.k_shot=1"), 0)
    data.label_words = spec.label_words
    objective = TextToTextObjective(spec, data, _Tokenizer(), decoder_only=decoder_only)
    text = " ".join(f"w{i}" for i in range(40))
    encoded = objective.encode([{"text": text, "label": 0}, {"text": text, "label": 1}])
    assert encoded[0]["source"] == encoded[1]["source"]  # same input whichever label is gold
    if decoder_only:
        assert len(encoded[0]["source"]) + max(len(c) for c in objective.candidates) <= 12
        scored = objective._pair_batch([encoded[0]["source"]] * 2, objective.candidates)["input_ids"]
        assert (
            scored[0, : len(encoded[0]["source"])].tolist() == scored[1, : len(encoded[0]["source"])].tolist()
        )


def test_integer_labels_in_a_local_file_are_words_not_indices(tmp_path):
    rows = [{"inputs": f"text {i}", "outputs": 1 + i % 3} for i in range(60)]  # classes 1, 2, 3
    train, test = _jsonl(tmp_path / "train.jsonl", rows[:30]), _jsonl(tmp_path / "test.jsonl", rows[30:])
    data = prepare_task(
        _task("task=local", f"task.files.train={train}", f"task.files.test={test}", "task.dev_size=6"), 0
    )
    assert data.label_words == ["1", "2", "3"]
    assert data.stats["label_map"] == {"1": 0, "2": 1, "3": 2}
    by_text = {r["inputs"]: r["outputs"] for r in rows}
    assert all(data.label_words[e["label"]] == str(by_text[e["text"]]) for e in data.test)
    assert set(Counter(e["label"] for e in data.test)) == {0, 1, 2}  # 3 and 2 are not merged


def test_index_labels_out_of_range_are_an_error(tmp_path):
    path = _jsonl(tmp_path / "ids.jsonl", [{"inputs": f"t{i}", "outputs": i % 3} for i in range(30)])
    with pytest.raises(DataError, match=r"label 2 is not a class id 0\.\.1"):
        prepare_task(
            _task(
                "task=local",
                f"task.files.train={path}",
                f"task.files.test={path}",
                "task.label_format=index",
                "task.label_words=[a,b]",
            ),
            0,
        )
    words = _task(
        "task=local", f"task.files.train={path}", f"task.files.test={path}", "task.label_words=[a,b]"
    )
    with pytest.raises(DataError, match=r"label 0 is not one of the label words \['a', 'b'\]"):
        prepare_task(words, 0)
