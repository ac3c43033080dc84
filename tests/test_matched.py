"""The matched-budget view (--kind matched): score vs backbone size at one budget, a line per method, the
head-only baseline and random guess, checked through matplotlib's objects on a synthetic study written as run
records and on a real tiny matched sweep."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from test_figures import assert_one_colour_per_line, captions, shown_tick_labels

from analysis import collect, load, plot
from petsweep.records.status import RunDir, write_json
from petsweep.spec.errors import PetsweepError

BACKBONES = {"minilm-l1": (12_226_560, 1), "minilm-l2": (14_006_784, 2), "minilm-l3": (15_787_008, 3)}
TASKS = {"bbc_news": 0.2, "sst2": 0.5}  # random-guess score
BITFIT = {"minilm-l1": 4_608, "minilm-l2": 8_832, "minilm-l3": 13_056}  # the target per backbone
# method -> (method config, score on minilm-l1, gain per extra layer); apet's budget is its apet.scale
METHODS = {
    "lora": ({"name": "lora", "r": 3}, 0.60, 0.05),
    "adapter": ({"name": "adapter", "bottleneck": 2}, 0.55, 0.04),
    "apet": ({"name": "apet"}, 0.50, 0.06),
}
HEAD_SCORE, SEEDS, NOISE = 0.40, (0, 1), (-0.02, 0.02)  # 2 seeds: mean as written, std 0.0283


def score(base, gain, backbone, task, noise):
    return round(base + gain * (BACKBONES[backbone][1] - 1) + (0.1 if task == "sst2" else 0) + noise, 4)


def write(root, name, *, backbone, method, task, seed, score, budget=None, apet=None):
    run = RunDir(root / name)
    run.set_status("COMPLETED")
    total, depth = BACKBONES[backbone]
    write_json(
        run.result_file,
        {
            "status": "COMPLETED", "run_id": name, "backbone": backbone, "method": method["name"],
            "task": task, "seed": seed, "metric": "accuracy", "score": score, "metrics": {"accuracy": score},
            "random_guess_score": TASKS[task], "trainable_params": 1925 + BITFIT[backbone], "pet_params": 0,
            "total_params": total, "nonembedding_params": total - 11_720_448, "budget": budget, "apet": apet,
            "config": {
                "backbone": {"name": backbone, "num_layers": depth, "arch": {"num_hidden_layers": 6}},
                "method": method, "task": {"name": task}, "seed": seed,
                "budget": None if method["name"] in ("apet", "head", "full") else "bitfit",
                "apet": {"scale": (apet or {}).get("scale"), "seed": seed},
            },
        },
    )  # fmt: skip


def write_study(root, *, with_full=True):
    """3 methods at budget=bitfit, head alone and full FT (no budget), 3 backbones, 2 seeds, 2 tasks."""
    for task in TASKS:
        for backbone in BACKBONES:
            target = BITFIT[backbone]
            for seed, noise in zip(SEEDS, NOISE):
                for key, (method, base, gain) in METHODS.items():
                    budget, apet = {"requested": "bitfit", "target": target, "achieved": target - 3}, None
                    if key == "apet":
                        budget, apet = None, {"scale": "bitfit", "requested": target, "achieved": target}
                    value = score(base, gain, backbone, task, noise)
                    write(root, f"{task}-{backbone}-{key}-s{seed}", backbone=backbone, method=method,
                          task=task, seed=seed, score=value, budget=budget, apet=apet)  # fmt: skip
                write(root, f"{task}-{backbone}-head-s{seed}", backbone=backbone, method={"name": "head"},
                      task=task, seed=seed, score=score(HEAD_SCORE, 0.0, backbone, task, noise))  # fmt: skip
                if with_full:
                    write(root, f"{task}-{backbone}-full-s{seed}", backbone=backbone, method={"name": "full"},
                          task=task, seed=seed, score=score(0.9, 0.0, backbone, task, noise))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return collect([write_study(tmp_path_factory.mktemp("matched"))])


def drawn(monkeypatch, table, kind, path, where=None, x=None):
    """The Figure `plot` drew (as test_figures.drawn, with --x), drawn on its canvas."""
    import matplotlib.pyplot as plt

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    try:
        plot(table, kind, path, where=where, x=x)
    finally:
        monkeypatch.setattr(plt, "close", close)
    figures[-1].canvas.draw()
    return figures[-1]


def bars(ax) -> dict:
    return {c.get_label(): c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)}


def test_the_table_carries_each_runs_budget_and_apets_from_its_scale(table):
    lora = table[(table["method"] == "lora") & (table["backbone"] == "minilm-l2")]
    assert set(lora["budget.requested"]) == {"bitfit"} and set(lora["budget.target"]) == {8_832}
    apet = table[(table["method"] == "apet") & (table["backbone"] == "minilm-l3")]
    assert set(apet["budget.requested"]) == {"bitfit"} and set(apet["budget.target"]) == {13_056}
    assert table.loc[table["method"] == "head", "budget.requested"].isna().all()


def test_matched_draws_a_line_per_method_the_head_baseline_and_random_guess(table, tmp_path, monkeypatch):
    fig = drawn(monkeypatch, table, "matched", tmp_path / "m.png")
    assert [ax.get_title() for ax in fig.axes] == ["bbc_news / budget=bitfit", "sst2 / budget=bitfit"]
    sizes = sorted(total for total, _ in BACKBONES.values())
    for ax, task in zip(fig.axes, TASKS):
        lines = bars(ax)
        assert set(lines) == {"adapter", "apet", "lora", "head only"}
        for key, (_, base, gain) in [*METHODS.items(), ("head only", (None, HEAD_SCORE, 0.0))]:
            line = lines[key].lines[0]
            assert list(line.get_xdata()) == sizes  # each backbone at its size, the budget kept in the data
            expected = [score(base, gain, b, task, 0.0) for b in BACKBONES]  # the mean of the two seeds
            assert list(line.get_ydata()) == pytest.approx(expected, abs=1e-9)
            lengths = [seg[1][1] - seg[0][1] for seg in lines[key].lines[2][0].get_segments()]
            assert lengths == pytest.approx([2 * np.std([-0.02, 0.02], ddof=1)] * 3, abs=1e-6)  # ± 1 std
        head = lines["head only"].lines[0]
        assert (head.get_linestyle(), matplotlib.colors.to_hex(head.get_color())) == ("--", "#808080")
        assert all(lines[m].lines[0].get_linestyle() == "-" for m in METHODS)
        [guess] = [ln for ln in ax.get_lines() if ln.get_label() == "random guess"]
        assert list(guess.get_ydata()) == pytest.approx([TASKS[task]] * 2) and guess.get_linestyle() == ":"
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "backbone parameters (total)"
        assert ax.get_ylabel() in ("test accuracy", "")
        xs = sorted(lines[m].lines[0].get_transform().transform((sizes[0], 0.5))[0] for m in lines)
        assert min(np.diff(xs)) > 0  # set apart on the page, not behind each other
    assert fig.axes[0].get_ylabel() == "test accuracy"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "adapter", "apet", "lora", "head only", "random guess"
    ]  # fmt: skip
    note = captions(fig)
    assert (
        "budget=bitfit: bitfit's count on each backbone (4,608-13,056 PET parameters), achieved within 0.1%"
        in note
    )
    assert "mean over 2 runs each, bars: ± 1 std" in note and "head only (dashed grey)" in note
    assert "left out: 12 runs without a budget (full)" in note
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:  # readable: tick labels apart, every text on the page
        boxes = [t.get_window_extent(renderer) for t in shown_tick_labels(ax)]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    texts = [*fig.texts, *fig.legends[0].get_texts(), *[ax.title for ax in fig.axes]]
    for text in texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= -2 and box.x1 <= fig.bbox.x1 + 2 and box.y0 >= -2 and box.y1 <= fig.bbox.y1 + 2


def test_matched_keeps_a_methods_colour_in_a_panel_without_another_method(table, tmp_path, monkeypatch):
    """No adapter runs on bbc_news: apet and lora keep their colours of sst2 and of the legend (#26)."""
    fig = drawn(
        monkeypatch, table, "matched", tmp_path / "m.png", "not (task == 'bbc_news' and method == 'adapter')"
    )
    assert_one_colour_per_line(fig, "adapter")


def test_matched_by_depth_reads_the_real_depth_column(table, tmp_path, monkeypatch):
    fig = drawn(monkeypatch, table, "matched", tmp_path / "d.svg", where="task == 'sst2'", x="depth")
    [ax] = fig.axes
    assert list(bars(ax)["lora"].lines[0].get_xdata()) == [1, 2, 3]  # not the YAML's 6 layers
    assert ax.get_xscale() == "linear" and ax.get_xlabel() == "backbone depth (layers)"
    ticks = [t for t in shown_tick_labels(ax) if t in ax.get_xticklabels()]
    assert [t.get_text() for t in ticks] == ["1\nminilm-l1", "2\nminilm-l2", "3\nminilm-l3"]  # depth, name
    assert (tmp_path / "d.svg").read_bytes()[:200].find(b"<svg") >= 0


def test_matched_facets_mixed_budgets_and_refuses_what_it_cannot_draw(table, tmp_path, monkeypatch):
    mixed = table.astype({"budget.requested": object})  # as collect reads a mix of names and counts
    counted = (mixed["method"] == "lora") & (mixed["backbone"] != "minilm-l1")
    mixed.loc[counted, "budget.requested"] = 4096
    mixed.loc[counted, "budget.target"] = 4096
    fig = drawn(monkeypatch, mixed, "matched", tmp_path / "x.png", where="task == 'bbc_news'")
    assert [ax.get_title() for ax in fig.axes] == ["bbc_news / budget=4096", "bbc_news / budget=bitfit"]
    assert set(bars(fig.axes[0])) == {"lora", "head only"}  # the baseline in every panel of its task
    assert "budget=4096: its count (4,096 PET parameters)" in captions(fig)
    with pytest.raises(PetsweepError, match="no COMPLETED run with a budget"):
        plot(table[table["method"].isin(["head", "full"])], "matched", tmp_path / "y.png")
    old = table.drop(columns=[c for c in table.columns if c.startswith("budget.")])  # collected before them
    with pytest.raises(PetsweepError, match="no budget.requested column .*collect it again"):
        plot(old, "matched", tmp_path / "y.png")
    with pytest.raises(PetsweepError, match=r"--x 'width': choose one of: total, nonembedding, depth"):
        plot(table, "matched", tmp_path / "y.png", x="width")
    with pytest.raises(PetsweepError, match="only --kind matched takes an x axis"):
        plot(table, "curves", tmp_path / "y.png", x="depth")


def test_a_real_tiny_matched_sweep_collects_and_plots(tiny_conf, tmp_path):
    """run.py -m of LoRA and prompt at budget=bitfit and the head alone on tiny BERT cut to 1 and 2 layers,
    then petsweep collect and petsweep plot --kind matched (PNG by size, SVG by depth)."""
    from conftest import run_cli, sweep_argv

    depths = ("backbone=tiny-bert", "backbone.num_layers=1,2")
    for name, axes in (("matched", ("method=lora,prompt", "budget=bitfit")), ("head", ("method=head",))):
        out = run_cli(*sweep_argv(tiny_conf, tmp_path, *depths, *axes, name=name))
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    out = run_cli("-m", "petsweep.cli", "collect", str(tmp_path), "-o", str(tmp_path / "table.parquet"))
    assert out.returncode == 0, out.stderr[-3000:]
    table = load(tmp_path / "table.parquet")
    assert len(table) == 6 and set(table["status"]) == {"COMPLETED"}
    runs = table[table["method"] != "head"]
    assert set(runs["budget.requested"]) == {"bitfit"}
    assert (runs["budget.achieved"] == runs["pet_params"]).all()
    for suffix, extra in ((".png", ()), (".svg", ("--x", "depth"))):
        figure = tmp_path / f"matched{suffix}"
        args = [str(tmp_path / "table.parquet"), "--kind", "matched", "-o", str(figure), *extra]
        out = run_cli("-m", "petsweep.cli", "plot", *args)
        assert out.returncode == 0 and out.stdout.strip() == str(figure), out.stderr[-3000:]
        assert figure.stat().st_size > 0
    bad = run_cli(
        "-m", "petsweep.cli", "plot", str(tmp_path), "--kind", "curves", "--x", "depth", "-o", "c.png"
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr  # one line
    assert bad.stderr.startswith("error: --x depth: only --kind matched takes an x axis"), bad.stderr

    import matplotlib.pyplot as plt

    figures, close = [], plt.close
    plt.close = lambda fig=None: figures.append(fig)
    try:
        plot(table, "matched", tmp_path / "m.png", x="depth")
    finally:
        plt.close = close
    [ax] = figures[-1].axes
    lines = bars(ax)
    assert set(lines) == {"lora", "prompt", "head only"}
    for name in lines:
        assert list(lines[name].lines[0].get_xdata()) == [1, 2]
        rows = table[table["method"] == name.replace("head only", "head")].sort_values("depth")
        assert list(lines[name].lines[0].get_ydata()) == pytest.approx(list(rows["score"]))
    [guess] = [ln for ln in ax.get_lines() if ln.get_label() == "random guess"]
    assert guess.get_ydata()[0] == pytest.approx(table["random_guess_score"].mean())
    assert ax.get_title() == "bbc_news / budget=bitfit"
    plt.close(figures[-1])


def test_matched_ticks_name_each_backbone_and_a_depth_is_a_whole_number(table, tmp_path, monkeypatch):
    """#26 review: --x total (and nonembedding) ticks of 12M, 14M named no backbone; --x depth with one depth
    showed ticks of 0.8, 1.0, 1.2. A tick at each backbone drawn names it, with its size or depth."""
    for x, size in (("total", "12.2M"), ("nonembedding", "506.1k")):
        fig = drawn(monkeypatch, table, "matched", tmp_path / f"{x}.png", where="task == 'sst2'", x=x)
        [ax] = fig.axes
        texts = [t.get_text() for t in shown_tick_labels(ax) if t in ax.get_xticklabels()]
        assert texts[0] == f"minilm-l1\n{size}" and [t.split("\n")[0] for t in texts] == list(BACKBONES)
    one = "task == 'sst2' and backbone == 'minilm-l1'"
    fig = drawn(monkeypatch, table, "matched", tmp_path / "one.png", where=one, x="depth")
    [ax] = fig.axes
    assert [t.get_text() for t in shown_tick_labels(ax) if t in ax.get_xticklabels()] == ["1\nminilm-l1"]
    assert list(ax.get_xticks()) == [1] and ax.get_xlim()[1] - ax.get_xlim()[0] >= 1


def test_matched_wraps_many_budgets_into_rows(table, tmp_path, monkeypatch):
    """#26 review: a panel per budget in one row (5 budgets: 23 inches wide). At most 3 a row, a task's
    panels on one y scale."""
    import pandas as pd

    frames = [table[table["method"] == "head"]]
    for budget in ("1000", "4096", "16384", "65536", "bitfit"):
        runs = table[table["method"].isin(["lora", "adapter"])].astype({"budget.requested": object})
        frames.append(runs.assign(**{"budget.requested": budget, "run_id": runs["run_id"] + budget}))
    fig = drawn(
        monkeypatch, pd.concat(frames, ignore_index=True), "matched", tmp_path / "w.png", "task == 'sst2'"
    )
    assert len(fig.axes) == 5
    assert {ax.get_subplotspec().colspan.start for ax in fig.axes} == {0, 1, 2}
    assert {ax.get_subplotspec().rowspan.start for ax in fig.axes} == {0, 1}
    assert all(fig.axes[0].get_shared_y_axes().joined(fig.axes[0], ax) for ax in fig.axes)
    assert fig.get_figwidth() <= 14
