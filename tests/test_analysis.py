"""Analysis from hand-made run records with known answers: collect, thresholds, Pareto, figures."""

from __future__ import annotations

import json

import matplotlib.image
import pandas as pd
import pytest
from conftest import run_cli

from analysis import apet_pairs, collect, load, mean_std, pareto_front, plot, save, thresholds
from petsweep.records.status import RunDir, write_json
from petsweep.spec.errors import PetsweepError

# budget -> scores over 3 seeds; random guess 0.3; full FT 0.91
LORA = {10: [0.2, 0.25, 0.3], 100: [0.5, 0.6, 0.55], 1000: [0.9, 0.9, 0.92]}
FULL = [0.91, 0.9, 0.92]


def write_run(
    root,
    name,
    method,
    budget,
    seed,
    score,
    updated=1.0,
    train_score=None,
    run_id=None,
    backbone="tiny",
    total_params=5000,
    apet_scale=None,
    task="rte",
    trainer=None,
    task_cfg=None,
    method_cfg=None,
):
    run = RunDir(root / name)
    run.set_status("COMPLETED")
    status = json.loads(run.status_file.read_text())
    write_json(run.status_file, {**status, "updated": updated})
    write_json(
        run.result_file,
        {
            "status": "COMPLETED",
            "run_id": run_id or name,
            "backbone": backbone,
            "method": method,
            "task": task,
            "seed": seed,
            "metric": "accuracy",
            "score": score,
            "metrics": {"accuracy": score},
            "train_subset_score": score + 0.05 if train_score is None else train_score,
            "random_guess_score": 0.3,
            "trainable_params": budget,
            "pet_params": budget,
            "total_params": total_params,
            "peak_memory_mb": 100.0,
            "config": {
                "backbone": {"name": backbone},
                "method": {"name": method, "r": budget, **(method_cfg or {})},
                "task": {"name": task, **(task_cfg or {})},
                "seed": seed,
                "trainer": {"batch_size": 16, **(trainer or {})},
                "apet": {"scale": apet_scale, "seed": seed},
            },
        },
    )
    run.append_metrics({"step": 10, "dev_accuracy": score / 2})
    run.append_metrics({"step": 20, "dev_accuracy": score})


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "study"
    for budget, scores in LORA.items():
        for seed, score in enumerate(scores):
            write_run(root, f"lora-{budget}-{seed}", "lora", budget, seed, score)
    for seed, score in enumerate(FULL):
        write_run(root, f"full-{seed}", "full", 5000, seed, score)
    return root


def test_collect_one_row_per_run_and_round_trip(sweep, tmp_path):
    table = collect([sweep])
    assert len(table) == 12 and set(table["method"]) == {"lora", "full"}
    assert {"cfg.method.r", "test/accuracy", "trainable_params", "status", "git_commit"} <= set(table.columns)
    for suffix in (".parquet", ".csv"):
        back = load(save(table, tmp_path / f"table{suffix}"))
        pd.testing.assert_frame_equal(
            back[["run_id", "score", "trainable_params"]].sort_values("run_id").reset_index(drop=True),
            table[["run_id", "score", "trainable_params"]].sort_values("run_id").reset_index(drop=True),
            check_dtype=False,
        )


def test_a_column_of_mixed_types_is_saved_as_text_and_the_table_left_as_it_was(tmp_path):
    table = pd.DataFrame({"run_id": ["a", "b", "c"], "cfg.task.k_shot": [8, "all", None], "n": [1, 2, 3]})
    table["cfg.method.target_modules"] = pd.Series([["q", "v"], "all-linear", float("nan")], dtype=object)
    before = table.copy()
    back = pd.read_parquet(save(table, tmp_path / "t.parquet"))
    assert back["cfg.task.k_shot"].tolist()[:2] == ["8", "all"] and pd.isna(back["cfg.task.k_shot"][2])
    assert back["cfg.method.target_modules"].tolist()[:2] == ["['q', 'v']", "all-linear"]  # R39 W7: crashed
    assert back["n"].tolist() == [1, 2, 3]
    pd.testing.assert_frame_equal(table, before)  # the caller's table keeps its int cell


def test_a_column_of_lists_mixing_types_inside_is_saved_as_json_and_loaded_as_lists(tmp_path):
    """Parquet types a list column by its items: lists mixing numbers and texts are saved as their JSON text
    (review V: `collect -o` crashed with pyarrow's error), which load() reads back as the lists."""
    lists = [[1, "x"], [2, "y", None], None]
    table = pd.DataFrame({"run_id": ["a", "b", "c"], "backbone": "b", "method": "m", "task": "t", "seed": 0})
    empty = {"test/confusion": [{}, {}, {}]}  # a struct with no field (review W: ArrowNotImplementedError)
    table = table.assign(status="COMPLETED", score=0.5, trainable_params=1, **{"cfg.bb": lists}, **empty)
    back = load(save(table, tmp_path / "t.parquet"))
    assert back["cfg.bb"].tolist()[:2] == lists[:2] and back["cfg.bb"].isna()[2]
    assert back["test/confusion"].tolist() == ["{}"] * 3
    assert back["score"].tolist() == [0.5] * 3


def test_duplicate_run_ids_keep_the_newest(sweep, tmp_path):
    other = tmp_path / "other"
    write_run(other, "again", "lora", 10, 0, 0.99, updated=2.0, run_id="lora-10-0")
    table = collect([sweep, other])
    assert len(table) == 12 and table.set_index("run_id").loc["lora-10-0", "score"] == 0.99


@pytest.mark.parametrize("ids", ["mixed", "all", "none"])
def test_the_newest_row_of_each_run_id_in_updated_order_then_runs_without_one(ids):
    """load._finish takes the table once; its rows, order and dtypes are those of the sort, drop and concat
    it replaced, with ties and missing times in `updated`, run ids seen 1-3 times, runs without an id, and
    columns of every kind (a bool, an int, a float with NaN, texts, lists)."""
    import numpy as np

    from analysis.load import _finish

    rng = np.random.default_rng(7)
    n = 300
    run_id = rng.choice([f"r{i}" for i in range(120)], n).astype(object)
    if ids != "all":
        run_id[rng.random(n) < (1.0 if ids == "none" else 0.2)] = None
    updated = rng.choice([1.0, 2.0, 2.0, 3.5, np.nan], n)  # ties, and runs never updated (NaT)
    table = pd.DataFrame(
        {
            "run_id": run_id,
            "updated": updated,
            "at": np.arange(n),
            "ok": rng.random(n) < 0.5,
            "score": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
            "method": rng.choice(["lora", "ia3", None], n),
            "targets": [["q", "v"] if i % 2 else None for i in range(n)],
        }
    )
    before = table.copy()
    before["updated"] = pd.to_datetime(before["updated"], unit="s", utc=True)
    has = before[before["run_id"].notna()].sort_values("updated").drop_duplicates("run_id", keep="last")
    expected = pd.concat([has, before[before["run_id"].isna()]], ignore_index=True)
    pd.testing.assert_frame_equal(_finish(table), expected)


def test_thresholds_have_the_known_answer(sweep):
    [row] = thresholds(collect([sweep]), epsilon=0.02).to_dict("records")
    assert row["low_threshold"] == 100  # 10 params: mean 0.25 < 0.3 guess; 100: 0.55
    assert row["high_threshold"] == 1000  # within 0.02 of full FT's 0.91
    assert row["low_ci_lo"] <= 100 <= row["low_ci_hi"]


def test_pareto_front_known_points():
    points = pd.DataFrame({"trainable_params": [10, 20, 30, 40], "mean": [0.5, 0.4, 0.7, 0.7]})
    assert pareto_front(points)["trainable_params"].tolist() == [10, 30]


@pytest.mark.parametrize("kind", ["curves", "pareto", "gap", "generalization", "threshold", "convergence"])
def test_plot_writes_an_image_of_the_expected_size(sweep, tmp_path, kind):
    path = plot(collect([sweep]), kind, tmp_path / f"{kind}.png")
    image = matplotlib.image.imread(path)
    assert image.shape[0] >= 2 * 480 and image.shape[1] >= 2 * 457 and image.std() > 0  # >= 200 dpi


def test_cli_collect_and_plot_and_bad_input(sweep, tmp_path):
    table, empty = tmp_path / "table.parquet", tmp_path / "empty"
    empty.mkdir()
    assert run_cli("-m", "petsweep.cli", "collect", str(sweep), "-o", str(table)).returncode == 0
    out = run_cli("-m", "petsweep.cli", "plot", str(table), "--kind", "curves", "-o", str(tmp_path / "c.pdf"))
    assert out.returncode == 0 and (tmp_path / "c.pdf").stat().st_size > 1000
    for args, words in (
        (["plot", str(table), "--kind", "apet", "-o", str(tmp_path / "a.png")], "APET runs"),
        (["plot", str(table), "--kind", "memory", "-o", str(tmp_path / "m.png")], "batch sizes"),
        (["collect", str(empty), "-o", str(table)], "holds no petsweep runs"),
    ):
        bad = run_cli("-m", "petsweep.cli", *args)
        assert bad.returncode == 2 and bad.stderr.startswith("error:") and words in bad.stderr, bad.stderr


def test_table_missing_columns_is_a_clear_error(tmp_path):
    pd.DataFrame({"score": [1.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(PetsweepError, match="lacks column"):
        load(tmp_path / "t.csv")


def _execute_notebook(tmp_path, **values) -> list[str]:
    """The notebook as a user runs it: papermill-style parameters (a cell injected after the one tagged
    `parameters`, as papermill does; papermill is not in the lock, nbclient is), executed from a directory
    that is not the repository. Returns its printed text; fails on an error output or a file written where
    it ran from."""
    import nbformat
    from conftest import REPO
    from nbclient import NotebookClient

    notebook = nbformat.read(REPO / "analysis" / "notebooks" / "scaling.ipynb", as_version=4)
    [at] = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    injected = "\n".join(f"{key} = {value!r}" for key, value in values.items())
    notebook.cells.insert(
        at + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]})
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(elsewhere)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert not list(elsewhere.iterdir())  # nothing written where it ran from
    return [o.get("text", "") for o in outputs]


def test_notebook_runs_on_a_real_small_sweep(tiny, tmp_path):
    """The notebook on a real sweep draws every view, the gap, APET, matched-budget (APET's apet.scale is a
    budget) and transfer (the runs scored on headlines) views too; on a table collected before budgets were
    recorded the matched view says so in one line and the rest is drawn."""
    from analysis import save
    from petsweep.compose import compose
    from petsweep.run.app import run
    from petsweep.run.transfer import transfer_sweeps

    for method in ("method=lora", "method=full", "method=apet apet.scale=lora"):
        for seed in (1, 2):
            run(compose(tiny("encoder", *method.split(), f"seed={seed}", "sweep_name=nb")))
    sweep = tmp_path / "runs" / "nb"
    list(transfer_sweeps([sweep], ["bbc_headlines"], ("task.test_size=30", "task.max_length=32")))
    views = ["apet", "curves", "gap", "generalization", "matched", "pareto", "transfer"]

    figures = tmp_path / "figures"
    printed = _execute_notebook(tmp_path, sweep=str(sweep), figures=str(figures), task="bbc_news")
    assert sorted(p.name for p in figures.glob("*.png")) == [f"{v}.png" for v in views]
    assert not any("not drawn" in text for text in printed)

    old = collect([sweep])  # as docs/cpu_demo/table.csv: collected before budgets were recorded
    save(old.drop(columns=[c for c in old.columns if c.startswith("budget.")]), tmp_path / "old.csv")
    printed = _execute_notebook(
        tmp_path, sweep=str(tmp_path / "old.csv"), figures=str(tmp_path / "old"), task="bbc_news"
    )
    lines = [line for text in printed for line in text.splitlines() if "not drawn" in line]
    assert lines == [
        "matched: not drawn: matched: the table has no budget.requested column (a table collected before "
        "budgets were recorded, like docs/cpu_demo/table.csv): collect it again from its sweep dirs"
    ]
    assert sorted(p.name for p in (tmp_path / "old").glob("*.png")) == [
        f"{v}.png" for v in views if v != "matched"
    ]


def test_wandb_offline_run_is_a_second_source(tiny):
    from petsweep.compose import compose
    from petsweep.model.resolve import run_dir
    from petsweep.run.app import run

    cfg = compose(tiny("encoder", "logger=wandb", "sweep_name=w"))
    result = run(cfg)
    path = run_dir(cfg)
    (path / "result.json").unlink()  # e.g. a run whose record was lost: W&B still has its summary
    [row] = collect([path.parent]).to_dict("records")
    assert row["source"] == "wandb" and row["score"] == result["score"]
    assert row["trainable_params"] == result["trainable_params"] and row["cfg.method.name"] == "lora"


# APET finding 1 by hand: X and APET(X) at X's budget on a small and a large backbone (3 seeds each)
APET_CASES = {  # (backbone, size): {(method, apet.scale): scores}
    ("small", 10**6): {("lora", None): [0.80, 0.82, 0.84], ("apet", "lora"): [0.60, 0.62, 0.64]},
    ("large", 10**8): {("lora", None): [0.90, 0.91, 0.92], ("apet", "lora"): [0.89, 0.90, 0.91]},
}


@pytest.fixture
def apet_sweep(tmp_path):
    root = tmp_path / "apet"
    for (backbone, size), runs in APET_CASES.items():
        for (method, scale), scores in runs.items():
            for seed, score in enumerate(scores):
                write_run(
                    root,
                    f"{backbone}-{method}-{seed}",
                    method,
                    100,
                    seed,
                    score,
                    backbone=backbone,
                    total_params=size,
                    apet_scale=scale,
                )
        # noise the view must ignore: an integer budget (no X to compare with); APET(adapter) without adapter
        write_run(
            root,
            f"{backbone}-apet4096",
            "apet",
            4096,
            0,
            0.1,
            backbone=backbone,
            total_params=size,
            apet_scale="4096",
        )
        write_run(
            root,
            f"{backbone}-apet-adapter",
            "apet",
            300,
            0,
            0.1,
            backbone=backbone,
            total_params=size,
            apet_scale="adapter",
        )
    return root


def test_apet_view_pairs_x_with_apet_x_at_equal_budget(apet_sweep, tmp_path):
    for source in (collect([apet_sweep]), load(save(collect([apet_sweep]), tmp_path / "t.parquet"))):
        pairs = apet_pairs(source).set_index("backbone")
        assert set(pairs["x"]) == {"lora"} and list(pairs.index.sort_values()) == ["large", "small"]
        assert pairs.loc["small", "x_mean"] == pytest.approx(0.82)
        assert pairs.loc["small", "apet_mean"] == pytest.approx(0.62)
        assert pairs.loc["small", "gap"] == pytest.approx(-0.20)
        assert pairs.loc["large", "gap"] == pytest.approx(-0.01)  # the gap shrinks with scale
        assert pairs.loc["large", "total_params"] == 10**8 and pairs.loc["small", "apet_count"] == 3
    image = matplotlib.image.imread(plot(collect([apet_sweep]), "apet", tmp_path / "apet.png"))
    assert image.shape[0] >= 2 * 480 and image.std() > 0


def test_apet_x_is_compared_with_x_at_its_budget_only(apet_sweep, tmp_path):
    """LoRA swept over ranks: only the rank whose count APET(lora) was given is its reference (the others
    are not pooled into it); a second LoRA learning rate at that count is a variant of its own."""
    for seed, score in enumerate([0.20, 0.21, 0.22]):  # another rank: another count, far worse
        write_run(apet_sweep, f"small-lora-r1-{seed}", "lora", 12, seed, score, backbone="small")
    for seed, score in enumerate([0.70, 0.71, 0.72]):  # LoRA's count, another learning rate
        write_run(
            apet_sweep,
            f"small-lora-lr-{seed}",
            "lora",
            100,
            seed,
            score,
            backbone="small",
            total_params=10**6,
            method_cfg={"lr": 0.5},
        )
    pairs = apet_pairs(collect([apet_sweep]))
    small = pairs[pairs["backbone"] == "small"].set_index("x_label")
    assert sorted(small.index) == ["lora", "lora [method.lr=0.5]"]
    assert small.loc["lora", "x_mean"] == pytest.approx(0.82)
    assert small.loc["lora [method.lr=0.5]", "x_mean"] == pytest.approx(0.71)
    assert list(small["apet_mean"]) == pytest.approx([0.62, 0.62]) and list(small["x_count"]) == [3, 3]


def test_apet_x_is_compared_with_x_trained_the_same_way_only(apet_sweep, tmp_path, monkeypatch):
    """#26 review: APET(lora) at 10 steps was paired with LoRA at 20 steps and with LoRA under another
    pooling (two squares both labelled `lora`). Settings other than the methods' own keys must match; where
    several pairs share a backbone, their labels name what differs."""
    import matplotlib.pyplot as plt

    for seed, score in enumerate([0.30, 0.31, 0.32]):  # LoRA trained longer, no APET run like it
        write_run(apet_sweep, f"small-lora-long-{seed}", "lora", 100, seed, score, backbone="small",
                  total_params=10**6, trainer={"max_steps": 200})  # fmt: skip
    pairs = apet_pairs(collect([apet_sweep]))
    small = pairs[pairs["backbone"] == "small"]
    assert len(small) == 1 and small["x_mean"].tolist() == pytest.approx([0.82])
    for (method, scale), scores in {("lora", None): [0.50, 0.52], ("apet", "lora"): [0.40, 0.42]}.items():
        for seed, score in enumerate(scores):  # APET(lora) and LoRA both under a second pooling: a pair
            write_run(apet_sweep, f"small-{method}-pooler-{seed}", method, 100, seed, score, backbone="small",
                      total_params=10**6, apet_scale=scale, task_cfg={"pooling": "cls"})  # fmt: skip
    pairs = apet_pairs(collect([apet_sweep]))
    small = pairs[pairs["backbone"] == "small"].set_index("settings")
    assert sorted(small.index) == ["", "task.pooling=cls"]  # a key a run lacks is not named
    assert small.loc["task.pooling=cls", "gap"] == pytest.approx(0.41 - 0.51)
    assert small.loc["", "gap"] == pytest.approx(0.62 - 0.82)
    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    plot(collect([apet_sweep]), "apet", tmp_path / "apet.png")
    monkeypatch.setattr(plt, "close", close)
    legend = [t.get_text() for lg in figures[-1].legends for t in lg.get_texts()]
    assert sorted(legend) == [
        "APET(lora [task.pooling=cls])",
        "APET(lora)",
        "lora",
        "lora [task.pooling=cls]",
    ]
    gap_ax = figures[-1].axes[1]  # the gap panel: a line per pair, in a colour and style of its own
    styles = {(c.lines[0].get_color(), c.lines[0].get_linestyle()) for c in gap_ax.containers}
    assert len(styles) == 2, styles


def test_a_null_head_lr_is_compared_as_the_methods_lr(tmp_path):
    """LoRA's runs record trainer.head_lr null (the head trains at LoRA's lr, 2e-3), APET's record 2e-3: the
    same setting, so they pair (the demo's APET(lora) lost its LoRA reference otherwise)."""
    for seed, score in enumerate([0.80, 0.82]):
        write_run(tmp_path / "s", f"lora-{seed}", "lora", 100, seed, score, method_cfg={"lr": 2e-3})
        write_run(tmp_path / "s", f"apet-{seed}", "apet", 100, seed, score - 0.1, apet_scale="lora",
                  method_cfg={"lr": 1e-3}, trainer={"head_lr": 2e-3})  # fmt: skip
    write_run(tmp_path / "s", "lora-other-head", "lora", 100, 5, 0.1, method_cfg={"lr": 2e-3},
              trainer={"head_lr": 1e-4})  # fmt: skip
    pairs = apet_pairs(collect([tmp_path / "s"]))
    assert len(pairs) == 1 and pairs["x_mean"].tolist() == pytest.approx([0.81]), pairs.T


def test_apet_without_its_reference_method_says_so(tmp_path):
    write_run(tmp_path / "s", "a", "apet", 300, 0, 0.5, apet_scale="adapter")
    write_run(tmp_path / "s", "b", "lora", 100, 0, 0.5)
    with pytest.raises(PetsweepError, match=r"APET runs of \['adapter'\] have no runs of that method"):
        apet_pairs(collect([tmp_path / "s"]))


def test_where_selects_runs_and_bad_filters_are_one_line(sweep, tmp_path):
    table = tmp_path / "table.csv"
    assert run_cli("-m", "petsweep.cli", "collect", str(sweep), "-o", str(table)).returncode == 0
    out = run_cli(
        "-m",
        "petsweep.cli",
        "plot",
        str(table),
        "--kind",
        "curves",
        "--where",
        "method == 'lora'",
        "-o",
        str(tmp_path / "lora.png"),
    )
    assert out.returncode == 0 and (tmp_path / "lora.png").stat().st_size > 1000, out.stderr
    for where, words in (("method == 'adapter'", "keeps none"), ("method === 1", "not a valid filter")):
        bad = run_cli(
            "-m",
            "petsweep.cli",
            "plot",
            str(table),
            "--kind",
            "curves",
            "--where",
            where,
            "-o",
            str(tmp_path / "x.png"),
        )
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and words in bad.stderr, bad.stderr
    bad = run_cli(
        "-m", "petsweep.cli", "plot", str(table), "--kind", "transfer", "-o", str(tmp_path / "t.png")
    )
    assert bad.returncode == 2 and "petsweep transfer" in bad.stderr, bad.stderr


def test_thresholds_command_prints_and_writes_the_table(sweep, tmp_path):
    table = tmp_path / "table.csv"
    assert run_cli("-m", "petsweep.cli", "collect", str(sweep), "-o", str(table)).returncode == 0
    out = run_cli(
        "-m", "petsweep.cli", "thresholds", str(table), "--epsilon", "0.02", "-o", str(tmp_path / "th.csv")
    )
    assert out.returncode == 0, out.stderr
    [row] = pd.read_csv(tmp_path / "th.csv").to_dict("records")
    assert (row["task"], row["low_threshold"], row["high_threshold"]) == ("rte", 100, 1000)
    assert "low_threshold" in out.stdout


def test_views_never_average_across_tasks(sweep, tmp_path):
    from analysis.curves import DPI, FIGSIZE

    one = matplotlib.image.imread(plot(collect([sweep]), "curves", tmp_path / "one.png")).shape[0]
    for seed, score in enumerate((0.6, 0.7, 0.8)):
        write_run(sweep, f"cb-{seed}", "lora", 100, seed, score, task="cb")
    table = collect([sweep])
    image = matplotlib.image.imread(plot(table, "curves", tmp_path / "curves.png"))
    assert image.shape[0] - one == FIGSIZE[1] * DPI  # a row of panels per task
    with pytest.raises(PetsweepError, match=r"pareto: the table holds 2 tasks \(cb, rte\).*--where"):
        plot(table, "pareto", tmp_path / "pareto.png")
    assert plot(table, "pareto", tmp_path / "pareto.png", where="task == 'cb'").stat().st_size > 1000


def test_runs_that_differ_in_more_than_the_seed_are_never_averaged(tmp_path):
    """Three full-data runs at 0.95 and three 16-shot runs at 0.40 at another lr are two points, not 0.675."""
    root = tmp_path / "mixed"
    for seed in range(3):
        write_run(root, f"full-data-{seed}", "lora", 100, seed, 0.95, trainer={"lr": 1e-3})
        write_run(
            root, f"few-shot-{seed}", "lora", 100, seed, 0.40, trainer={"lr": 3e-4}, task_cfg={"k_shot": 16}
        )
    table = collect([root])
    stats = mean_std(table, ["task", "backbone", "method", "trainable_params"])
    assert sorted(stats["mean"].round(6)) == [0.4, 0.95] and set(stats["count"]) == {3}
    assert stats.attrs["variant_keys"] == ["cfg.task.k_shot", "cfg.trainer.lr"]
    assert "pooled over seed, apet.seed only" in stats.attrs["note"]  # these records have an apet node
    assert "kept apart: task.k_shot, trainer.lr" in stats.attrs["note"]
    assert set(stats["variant"]) == {"task.k_shot=16, trainer.lr=0.0003", "trainer.lr=0.001"}
    found = thresholds(table).set_index("variant")
    assert len(found) == 2 and found["low_threshold"].tolist() == [100, 100]
    pooled = mean_std(
        table, ["task", "backbone", "method", "trainable_params"], pool=("cfg.trainer.lr", "cfg.task.k_shot")
    )  # pooled only when the user says so
    assert pooled["mean"].round(3).tolist() == [0.675] and pooled["count"].tolist() == [6]


def test_runs_at_other_precision_are_kept_apart(tmp_path):
    root = tmp_path / "prec"
    for seed in range(2):
        write_run(root, f"a-{seed}", "lora", 100, seed, 0.9)
        write_run(root, f"b-{seed}", "lora", 100, seed, 0.5)
        path = root / f"b-{seed}" / "result.json"
        path.write_text(
            path.read_text().replace('"status": "COMPLETED"', '"precision": "bf16", "status": "COMPLETED"')
        )
    stats = mean_std(collect([root]), ["task", "backbone", "method", "trainable_params"])
    assert sorted(stats["mean"].round(6)) == [0.5, 0.9] and stats.attrs["variant_keys"] == ["precision"]


def test_runs_with_frozen_weights_in_another_dtype_are_kept_apart(tmp_path):
    """backbone_dtype (what frozen_dtype=auto held) splits a group; a record from before the field existed
    held fp32 and pools with float32 ones."""
    root = tmp_path / "dtype"
    fields = {"a": '"backbone_dtype": "bfloat16", ', "b": '"backbone_dtype": "float32", ', "c": ""}
    for seed in range(2):
        for name, field in fields.items():
            write_run(root, f"{name}-{seed}", "lora", 100, seed, 0.9 if name == "a" else 0.5)
            path = root / f"{name}-{seed}" / "result.json"
            text = path.read_text().replace('"status": "COMPLETED"', field + '"status": "COMPLETED"')
            path.write_text(text)
    stats = mean_std(collect([root]), ["task", "backbone", "method", "trainable_params"])
    assert sorted(stats["mean"].round(6)) == [0.5, 0.9] and stats.attrs["variant_keys"] == ["backbone_dtype"]
    assert sorted(stats["count"]) == [2, 4]


def test_bootstrap_counts_draws_that_reach_no_budget(tmp_path):
    """At 100 params one seed of three carries the mean over the guess: ~30% of resamples reach nothing."""
    root = tmp_path / "boot"
    for budget, scores in {10: [0.2, 0.2, 0.2], 100: [0.25, 0.25, 0.45]}.items():
        for seed, score in enumerate(scores):
            write_run(root, f"lora-{budget}-{seed}", "lora", budget, seed, score)
    [row] = thresholds(collect([root]), draws=2000).to_dict("records")
    assert row["low_threshold"] == 100
    assert row["low_ci_hi"] == float("inf")  # dropping those draws would have given 100
    assert abs(row["low_not_reached"] - (2 / 3) ** 3) < 0.03


@pytest.fixture
def two_backbones(tmp_path):
    """LoRA at three ranks and full FT, 3 seeds, on a small and a big backbone of one task."""
    root = tmp_path / "scale"
    for backbone, total, lift in (("small", 5000, 0.0), ("big", 50000, 0.05)):
        for budget, scores in LORA.items():
            for seed, score in enumerate(scores):
                write_run(root, f"{backbone}-lora-{budget}-{seed}", "lora", budget, seed, score + lift,
                          backbone=backbone, total_params=total)  # fmt: skip
        for seed, score in enumerate(FULL):
            write_run(root, f"{backbone}-full-{seed}", "full", total, seed, score + lift, backbone=backbone,
                      total_params=total)  # fmt: skip
    return collect([root])


def _drawn(monkeypatch, table, kind, path):
    """The matplotlib Figure a kind draws (read through its objects, not its pixels), and its caption."""
    import analysis.curves as curves

    seen = {}
    real = curves.save_figure

    def keep(fig, out, note=None, top=1.0):
        seen.update(fig=fig, note=note)
        return real(fig, out, note, top)

    monkeypatch.setattr(curves, "save_figure", keep)
    plot(table, kind, path)
    return seen["fig"], seen["note"]


def test_curves_are_labelled_for_a_paper(two_backbones, tmp_path, monkeypatch):
    fig, note = _drawn(monkeypatch, two_backbones, "curves", tmp_path / "c.png")
    small, big = fig.axes
    assert [small.get_title(), big.get_title()] == ["rte / small", "rte / big"]  # task named, by size
    assert small.get_ylabel() == "test accuracy" and small.get_xlabel() == "tunable parameters"
    assert small.get_shared_y_axes().joined(small, big)  # one scale within a task
    assert small.get_legend() is None and big.get_legend() is None and len(fig.legends) == 1
    shared = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(shared) == len(set(shared)) and {"lora", "full FT", "random guess"} <= set(shared)
    assert all(t.get_fontsize() >= 8 for t in fig.legends[0].get_texts())
    assert {t.get_text() for t in small.texts} == {"r=10", "r=100", "r=1000"}  # LoRA points by rank
    assert "mean over 3 runs each, bars: ± 1 std" in note
    height, width, _ = matplotlib.image.imread(tmp_path / "c.png").shape
    assert round(width / fig.get_figwidth()) >= 200 and round(height / fig.get_figheight()) >= 200  # dpi


def test_pareto_has_two_short_legends(two_backbones, tmp_path, monkeypatch):
    fig, _ = _drawn(monkeypatch, two_backbones, "pareto", tmp_path / "p.pdf")
    [ax] = fig.axes
    legends = [a for a in ax.get_children() if isinstance(a, matplotlib.legend.Legend)]
    titles = sorted(legend.get_title().get_text() for legend in legends)
    assert titles == ["backbone", "method"] and ax.get_ylabel().startswith("test accuracy")
    entries = [t.get_text() for legend in legends for t in legend.get_texts()]
    assert entries == ["small", "big", "full", "lora", "Pareto frontier"]
    assert all(t.get_fontsize() >= 8 for legend in legends for t in legend.get_texts())


def test_convergence_keeps_backbones_and_ranks_apart(two_backbones, tmp_path, monkeypatch):
    fig, _ = _drawn(monkeypatch, two_backbones, "convergence", tmp_path / "v.png")
    assert [ax.get_title() for ax in fig.axes] == ["small", "big"]
    assert fig.axes[0].get_ylabel() == "dev accuracy"
    lines = {line.get_label() for line in fig.axes[0].get_lines()}
    assert lines == {"full", "lora, r=10", "lora, r=100", "lora, r=1000"}


def test_thresholds_say_why_a_high_threshold_is_missing(sweep, tmp_path):
    table = save(collect([sweep]), tmp_path / "t.csv")
    out = run_cli("-m", "petsweep.cli", "thresholds", str(table), "--where", "method == 'lora'")
    assert out.returncode == 0, out.stderr
    assert "high_threshold" in out.stdout.splitlines()[0]  # the column stays, empty
    assert "note (1 of 1 groups): no full run to compare with: no high threshold" in out.stdout


def test_thresholds_keep_methods_apart(tmp_path):
    """LoRA reaches the guess at 100 params, BitFit only at 120: pooled as if they were seeds, budgets 100 and
    120 would be one curve whose 100 mixes both methods. Each method is a row of its own."""
    root = tmp_path / "methods"
    for seed in range(3):
        for budget, score in ((10, 0.2), (100, 0.6)):
            write_run(root, f"lora-{budget}-{seed}", "lora", budget, seed, score)
        for budget, score in ((100, 0.1), (120, 0.7)):
            write_run(root, f"bitfit-{budget}-{seed}", "bitfit", budget, seed, score)
        write_run(root, f"full-{seed}", "full", 5000, seed, 0.65)
    found = thresholds(collect([root]), epsilon=0.1)
    assert len(found) == 2, found.to_dict("records")
    found = found.set_index("method")
    assert sorted(found.index) == ["bitfit", "lora"] and set(found["seeds_per_budget"]) == {3}
    assert found.loc["lora", "low_threshold"] == 100 and found.loc["bitfit", "low_threshold"] == 120
    assert found.loc["lora", "high_threshold"] == 100 and found.loc["bitfit", "high_threshold"] == 120
