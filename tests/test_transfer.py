"""Task transfer: finished runs' trained weights scored on other tasks, through the API and the CLI."""

from __future__ import annotations

import json

import matplotlib.image
import pandas as pd
import pytest
from conftest import run_cli

from analysis import collect, plot, transfer_scores
from petsweep.compose import compose
from petsweep.model.resolve import run_dir
from petsweep.run.app import run
from petsweep.run.transfer import evaluate_transfer, transfer_file
from petsweep.spec.errors import ConfigError

# the tiny runs' task settings, reused for the evaluated task so its test split is as small
TASK_OVERRIDES = ("task.test_size=30", "task.max_length=32", "task.dev_size=20")


@pytest.mark.parametrize("family", ["encoder", "decoder"])
def test_own_task_through_transfer_reproduces_the_recorded_score(tiny, family):
    cfg = compose(tiny(family, "method=lora"))
    result = run(cfg)
    record = evaluate_transfer(run_dir(cfg), "bbc_news", TASK_OVERRIDES)
    assert record["score"] == result["score"]  # rebuilt backbone + method + saved weights = the trained model
    assert record["random_guess_score"] == result["random_guess_score"]
    assert json.loads(transfer_file(run_dir(cfg), "bbc_news").read_text()) == record


@pytest.fixture
def trained_sweep(tiny, tmp_path):
    """Two seeds of LoRA on bbc_news and one on bbc_headlines, in one sweep dir."""
    for task, seed in (("bbc_news", 1), ("bbc_news", 2), ("bbc_headlines", 1)):
        run(compose(tiny("encoder", f"task={task}", f"seed={seed}", "sweep_name=tr")))
    return tmp_path / "runs" / "tr"


def _transfer(sweep, *args):
    overrides = [a for o in TASK_OVERRIDES for a in ("--override", o)]
    return run_cli("-m", "petsweep.cli", "transfer", str(sweep), *args, *overrides)


def test_cli_scores_other_tasks_keeps_earlier_scores_and_feeds_the_matrix(trained_sweep, tmp_path):
    before = {p: p.read_bytes() for p in trained_sweep.rglob("result.json")}
    collect([trained_sweep])  # the sweep's index, so a quick collect below can answer from it alone
    out = _transfer(trained_sweep, "--task", "bbc_headlines", "--task", "bbc_news")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 transfer score(s) written" in out.stdout  # own tasks are not re-scored
    assert {p: p.read_bytes() for p in trained_sweep.rglob("result.json")} == before  # runs untouched
    again = _transfer(trained_sweep, "--task", "bbc_headlines", "--task", "bbc_news")
    assert "0 transfer score(s) written, 3 kept" in again.stdout

    quick = collect([trained_sweep], quick=True)  # R39 W3: a transfer writes the run's index line
    table = collect([trained_sweep])
    assert quick.attrs == {"quick_fell_back": [], "quick_sweeps": 1}  # its index answered alone
    pd.testing.assert_frame_equal(quick, table)
    scored = table[table["task"] == "bbc_news"]["transfer.bbc_headlines.score"]
    assert scored.notna().all() and scored.between(0, 1).all()
    cells = transfer_scores(table).set_index(["task", "eval_task"])
    assert cells.loc[("bbc_news", "bbc_news"), "count"] == 2
    assert cells.loc[("bbc_news", "bbc_news"), "mean"] == pytest.approx(
        table[table.task == "bbc_news"].score.mean()
    )
    assert cells.loc[("bbc_news", "bbc_headlines"), "mean"] == pytest.approx(scored.mean())
    assert set(cells.index) == {
        (a, b) for a in ("bbc_news", "bbc_headlines") for b in ("bbc_news", "bbc_headlines")
    }
    image = matplotlib.image.imread(plot(table, "transfer", tmp_path / "transfer.png"))
    # one 2 x 2 matrix at 200 dpi, as tall as it needs: 0.6 inch a task trained on, 1.6 for the title and
    # tick labels, 0.9 for the caption (#26 review: 4.8 inches a row of matrices before)
    assert image.shape[0] == round((0.6 * 2 + 1.6 + 0.9) * 200) and image.std() > 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--task", "rte"],
            ["--task", "rte", "5 output(s)", "2"],
        ),  # an encoder head of 5 classes cannot score 2
        (["--task", "sst3"], ["task", "sst3", "bbc_headlines"]),
        (["--task", "bbc_headlines", "--override", "trainer.max_steps=3"], ["--override", "task.*"]),
    ],
)
def test_bad_transfer_is_one_line_and_writes_nothing(trained_sweep, args, words):
    out = run_cli("-m", "petsweep.cli", "transfer", str(trained_sweep), *args)
    assert out.returncode == 2 and out.stderr.startswith("error:") and out.stderr.count("\n") == 1, out.stderr
    assert all(w in out.stderr for w in words), out.stderr
    assert not list(trained_sweep.rglob("transfer/*.json"))


def _local_files(tmp_path, name: str, rows: list[dict]) -> tuple[str, str]:
    """task.files overrides of a local task: the first half of `rows` to train on, the rest to test on."""
    for split, part in (("train", rows[: len(rows) // 2]), ("test", rows[len(rows) // 2 :])):
        (tmp_path / f"{name}_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return f"task.files.train={tmp_path}/{name}_train.jsonl", f"task.files.test={tmp_path}/{name}_test.jsonl"


def test_local_files_task_with_classes_from_the_data(tiny, tmp_path):
    """task=local learns its classes from the files at run time; transfer must rebuild the same head."""
    files = {}
    for name, words in (("a", ("good", "fine", "great")), ("b", ("bad", "poor", "awful"))):
        files[name] = _local_files(
            tmp_path,
            name,
            [
                {"inputs": f"{words[i % 3]} item {i}", "outputs": ["neg", "pos"][(i + (name == "b")) % 2]}
                for i in range(80)
            ],
        )
    cfg = compose(tiny("encoder", "task=local", *files["a"], "task.k_shot=null", "task.test_size=null"))
    result = run(cfg)
    same = evaluate_transfer(run_dir(cfg), "local", (*files["a"], "task.dev_size=20"))
    assert same["score"] == result["score"]
    other = evaluate_transfer(run_dir(cfg), "local", (*files["b"], "task.dev_size=20"))
    assert 0 <= other["score"] <= 1 and other["test_examples"] == 40


def test_a_head_scores_another_label_set_only_through_an_explicit_mapping(tiny, tmp_path):
    """Same class count is not enough: sst2's negative/positive are not rte's entailment/not_entailment."""
    rows = [
        {"inputs": f"{['awful', 'great'][i % 2]} thing {i}", "outputs": ["neg", "pos"][i % 2]}
        for i in range(80)
    ]
    own = _local_files(tmp_path, "a", rows)
    renamed = [{**r, "outputs": {"neg": "z_bad", "pos": "a_good"}[r["outputs"]]} for r in rows]  # order flips
    other = (*_local_files(tmp_path, "b", renamed), "task.dev_size=20")
    cfg = compose(tiny("encoder", "task=local", *own, "task.k_shot=null", "task.test_size=null"))
    result = run(cfg)
    with pytest.raises(
        ConfigError, match=r"\['a_good', 'z_bad'\] are not the head's \['neg', 'pos'\].*--label-map"
    ):
        evaluate_transfer(run_dir(cfg), "local", other)
    with pytest.raises(ConfigError, match="--label-map"):
        evaluate_transfer(run_dir(cfg), "local", other, label_map={"a_good": "pos", "z_bad": "pos"})
    mapped = evaluate_transfer(run_dir(cfg), "local", other, label_map={"a_good": "pos", "z_bad": "neg"})
    assert mapped["score"] == result["score"]  # the same texts and classes under other names
    assert mapped["label_map"] == {"a_good": "pos", "z_bad": "neg"}
