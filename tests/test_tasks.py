"""Task preparation: splits, k-shot, verbalizers, templates, the three sources, metrics, random guess."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from petsweep.compose import compose
from petsweep.model.resolve import resolve_run
from petsweep.spec.errors import DataError
from petsweep.tasks import prepare_task
from petsweep.tasks.metrics import compute_metric


def _task(*overrides):
    return resolve_run(compose(list(overrides))).task


def test_bbc_news_splits_are_fixed_and_labels_sorted():
    spec = _task()
    data = prepare_task(spec, seed=0)
    # 101 of the 2,225 articles repeat another and are removed before the split
    assert (len(data.train), len(data.dev), len(data.test)) == (2225 - 101 - 600, 200, 400)
    assert data.stats["repeats_removed"] == 101
    assert data.label_words == ["business", "entertainment", "politics", "sport", "tech"]
    again = prepare_task(_task(), seed=5)  # the run seed never moves the split
    assert [e["text"] for e in again.test] == [e["text"] for e in data.test]
    assert abs(data.random_guess - 0.2) < 0.02


def test_k_shot_is_class_balanced_and_seeded():
    a = prepare_task(_task("task.k_shot=4"), seed=1)
    b = prepare_task(_task("task.k_shot=4"), seed=1)
    c = prepare_task(_task("task.k_shot=4"), seed=2)
    assert Counter(e["label"] for e in a.train) == {i: 4 for i in range(5)}
    assert a.train == b.train and a.train != c.train


def test_random_guess_is_a_uniform_guess_not_the_majority_class(tmp_path):
    """18 of 20 test examples (and of the training ones) are "neg": always guessing the majority class would
    score 0.9; random guessing over two classes scores about 0.5, which is what result.json records."""
    rows = [{"inputs": f"t{i}", "outputs": "pos" if i % 10 == 0 else "neg"} for i in range(40)]
    data = prepare_task(
        _task(
            "task=local",
            f"task.files.train={_write_jsonl(tmp_path / 'train.jsonl', rows)}",
            f"task.files.test={_write_jsonl(tmp_path / 'test.jsonl', rows[:20])}",
            "task.dev_size=4",
        ),
        seed=0,
    )
    assert Counter(e["label"] for e in data.test) == {0: 18, 1: 2}
    assert abs(data.random_guess - 0.5) < 0.05


def test_verbalizer_and_templates():
    assert _task("task.label_mapping_type=number").verbalizer() == ["0", "1", "2", "3", "4"]
    manual = prepare_task(_task("task.template=manual", "task.k_shot=1"), seed=0)
    assert all(e["text"].endswith("This article is about") for e in manual.train)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_files_jsonl_tsv_and_label_inference(tmp_path):
    rows = [{"inputs": f"t{i}", "outputs": ["neg", "pos"][i % 2]} for i in range(20)]
    train = _write_jsonl(tmp_path / "train.jsonl", rows)
    tsv = tmp_path / "test.tsv"
    tsv.write_text("".join(f"t{i}\t{['neg', 'pos'][i % 2]}\n" for i in range(6)))  # CrossFit: no header
    data = prepare_task(
        _task("task=local", f"task.files.train={train}", f"task.files.test={tsv}", "task.dev_size=4"), seed=0
    )
    assert data.label_words == ["neg", "pos"] and len(data.test) == 6 and len(data.dev) == 4
    assert [e["label"] for e in data.test] == [0, 1, 0, 1, 0, 1]


def test_malformed_csv_row_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("inputs,outputs\na,neg\nb,pos,extra\n")
    with pytest.raises(DataError, match=r"bad.csv:3: 3 columns, expected 2"):
        prepare_task(_task("task=local", f"task.files.train={bad}", f"task.files.test={bad}"), seed=0)


def test_hf_source_reads_a_local_dataset_dir_with_load_dataset(tmp_path):
    rows = [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": i % 2, "idx": i} for i in range(40)]
    _write_jsonl(tmp_path / "train.jsonl", rows)
    _write_jsonl(tmp_path / "validation.jsonl", rows[:10])
    data = prepare_task(
        _task("task=rte", f"task.hf_path={tmp_path}", "task.hf_name=null", "task.dev_size=5"), 0
    )
    # the 10 validation (= test) rows are also in train: they leave train before dev is carved
    assert (
        len(data.train) == 25
        and len(data.test) == 10
        and data.label_words == ["entailment", "not_entailment"]
    )
    assert data.stats["overlap_removed"] == 10


def test_metrics():
    assert compute_metric("accuracy", [0, 1, 1], [0, 1, 0]) == pytest.approx(2 / 3)
    assert compute_metric("f1", [1, 1, 0, 0], [1, 0, 0, 0], num_labels=2) == pytest.approx(2 / 3)
    assert compute_metric("mcc", [0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(1.0)
    assert compute_metric("pearson", [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(1.0)
    assert compute_metric("exact_match", ["The Paris!", "x"], [["paris"], ["y", "z"]]) == 0.5
    assert compute_metric("token_f1", ["new york city"], [["new york"]]) == pytest.approx(0.8)
    assert compute_metric("rougeL", ["the cat sat"], [["the cat sat"]]) == pytest.approx(1.0)
