"""Figures a reviewer accepts, checked through matplotlib's objects on a mixed study written as run records:
a matched-budget sweep (LoRA, adapter, prompt, BitFit, APET(lora), full FT) over three MiniLM depths, a LoRA
rank sweep, a transfer pair and a batch-size sweep."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from analysis import collect, plot
from petsweep.records.status import RunDir, write_json

BACKBONES = {"minilm-l1": 12_226_560, "minilm-l2": 14_006_784, "minilm-l3": 15_787_008}  # total params
HEAD = 384 * 5 + 5
# method -> (method config, apet.scale, PET params per layer, mean score on L1, gain per extra layer)
MATCHED = {
    "lora": ({"name": "lora", "r": 8, "alpha": 16}, None, 12_288, 0.62, 0.05),
    "adapter": ({"name": "adapter", "bottleneck": 16}, None, 12_800, 0.58, 0.06),
    "prompt": ({"name": "prompt", "length": 32}, None, 12_288, 0.40, 0.02),
    "bitfit": ({"name": "bitfit"}, None, 8_064, 0.55, 0.04),
    "apet": ({"name": "apet"}, "lora", 12_288, 0.57, 0.06),
}
SEEDS = (0, 1, 2)
NOISE = (-0.04, 0.0, 0.04)  # seed spread (std 0.04) as large as the gaps between methods


def write_record(root, name, *, backbone, method, pet, score, seed, task="bbc_news", apet_scale=None,
                 batch_size=16, test_size=30, memory=100.0, steps=(10, 20), lr=1e-3):  # fmt: skip
    """A COMPLETED run as petsweep writes it (status, result.json, metrics.jsonl)."""
    run = RunDir(root / name)
    run.set_status("COMPLETED")
    head = HEAD if method["name"] != "full" else 0
    write_json(
        run.result_file,
        {
            "status": "COMPLETED",
            "run_id": name,
            "backbone": backbone,
            "method": method["name"],
            "task": task,
            "seed": seed,
            "metric": "accuracy",
            "score": score,
            "metrics": {"accuracy": score},
            "train_subset_score": score + 0.1 + 0.02 * seed,
            "random_guess_score": 0.2,
            "trainable_params": pet + head,
            "pet_params": pet,
            "total_params": BACKBONES[backbone],
            "peak_memory_mb": memory,
            "data": {"sizes": {"train": 40, "dev": 20, "test": test_size}},
            "config": {
                "backbone": {"name": backbone, "num_layers": int(backbone[-1])},
                "method": method,
                "task": {"name": task, "test_size": test_size},
                "seed": seed,
                "trainer": {"batch_size": batch_size, "lr": lr},
                "apet": {"scale": apet_scale, "seed": seed},
            },
        },
    )
    for step in steps:
        run.append_metrics({"step": step, "dev_accuracy": score * step / steps[-1]})


def write_study(root):
    """The matched-budget sweep and a LoRA rank sweep (r=1, 8, 32) over three depths, 3 seeds each."""
    for backbone in BACKBONES:
        layers = int(backbone[-1])
        for key, (method, scale, per_layer, base, gain) in MATCHED.items():
            for seed, noise in zip(SEEDS, NOISE):
                score = round(base + gain * (layers - 1) + noise, 4)
                write_record(root / "matched", f"{backbone}-{key}-s{seed}", backbone=backbone, method=method,
                             pet=per_layer * layers, score=score, seed=seed, apet_scale=scale)  # fmt: skip
        for seed, noise in zip(SEEDS, NOISE):
            score = round(0.8 + 0.02 * layers + noise / 2, 4)
            full = {"name": "full"}
            write_record(root / "matched", f"{backbone}-full-s{seed}", backbone=backbone, method=full,
                         pet=BACKBONES[backbone], score=score, seed=seed)  # fmt: skip
        for r in (1, 8, 32):
            for seed, noise in zip(SEEDS, NOISE):
                write_record(root / "ranks", f"{backbone}-lora-r{r}-s{seed}", backbone=backbone,
                             method={"name": "lora", "r": r, "alpha": 16}, pet=1536 * r * layers,
                             score=round(0.5 + 0.03 * np.log2(r) + noise, 4), seed=seed)  # fmt: skip
    return root


def write_transfer(root):
    """LoRA trained on bbc_news and on bbc_headlines (30 test examples each), each scored on the other task
    by `petsweep transfer` (200 test examples): every score within 0.38-0.42."""
    scores = {("bbc_news", "bbc_headlines"): 0.38, ("bbc_headlines", "bbc_news"): 0.40}
    own = {"bbc_news": 0.42, "bbc_headlines": 0.41}
    for task, other in scores:
        for seed in SEEDS:
            name = f"{task}-lora-s{seed}"
            write_record(root / "transfer", name, backbone="minilm-l1", method={"name": "lora", "r": 8},
                         pet=12_288, score=own[task], seed=seed, task=task)  # fmt: skip
            (root / "transfer" / name / "transfer").mkdir()
            write_json(
                root / "transfer" / name / "transfer" / f"{other}.json",
                {"run_id": name, "source_task": task, "task": other, "metric": "accuracy",
                 "score": scores[(task, other)], "random_guess_score": 0.2, "test_examples": 200},
            )  # fmt: skip
    return root


def write_memory(root):
    for batch, memory in ((8, 300.0), (16, 420.0), (32, 700.0)):
        for key in ("lora", "bitfit"):
            method, _, per_layer, base, _ = MATCHED[key]
            peak = memory + (50 if key == "lora" else 0)
            write_record(root / "memory", f"{key}-b{batch}", backbone="minilm-l1", method=method,
                         pet=per_layer, score=base, seed=0, batch_size=batch, memory=peak)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    write_study(root), write_transfer(root), write_memory(root)
    return root


def tables(root) -> dict[str, pd.DataFrame]:
    return {
        "matched": collect([root / "matched"]),
        "ranks": collect([root / "ranks"]),
        "transfer": collect([root / "transfer"]),
        "memory": collect([root / "memory"]),
    }


def drawn(monkeypatch, table, kind, path, where=None):
    """The Figure `plot` drew (read through matplotlib's objects), drawn on its canvas."""
    import matplotlib.pyplot as plt

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    try:
        plot(table, kind, path, where=where)
    finally:
        monkeypatch.setattr(plt, "close", close)
    fig = figures[-1]
    fig.canvas.draw()
    return fig


def shown_tick_labels(ax):
    """The tick labels (major and minor) an axes shows: non-empty, at ticks inside its view."""
    shown = []
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(axis.get_view_interval())
        for minor in (False, True):
            for loc, text in zip(axis.get_ticklocs(minor=minor), axis.get_ticklabels(minor=minor)):
                if text.get_visible() and text.get_text() and lo <= loc <= hi:
                    shown.append(text)
    return shown


def captions(fig) -> str:
    texts = [t.get_text() for t in fig.texts]
    if getattr(fig, "_supxlabel", None) is not None:
        texts.append(fig._supxlabel.get_text())
    return " ".join(texts).replace("\n", " ")


KINDS = [  # (kind, table, where)
    ("curves", "matched", None),
    ("curves", "matched", "method != 'full'"),  # a budget range within one decade
    ("pareto", "matched", None),
    ("gap", "matched", None),
    ("generalization", "matched", None),
    ("apet", "matched", None),
    ("threshold", "ranks", None),
    ("convergence", "ranks", None),
    ("transfer", "transfer", None),
    ("memory", "memory", None),
]


@pytest.mark.parametrize(("kind", "source", "where"), KINDS)
def test_every_kind_shows_readable_ticks_and_keeps_its_text_on_the_page(study, tmp_path, monkeypatch, kind,
                                                                         source, where):  # fmt: skip
    fig = drawn(monkeypatch, tables(study)[source], kind, tmp_path / f"{kind}.png", where)
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    for ax in fig.axes:
        labels = shown_tick_labels(ax)
        boxes = [t.get_window_extent(renderer) for t in labels]
        for i, a in enumerate(boxes):
            for j in range(i + 1, len(boxes)):
                assert not a.overlaps(boxes[j]), (kind, labels[i].get_text(), labels[j].get_text())
    texts = [
        *fig.texts,
        *[t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts)],
    ]
    texts += [t for legend in [*fig.legends, *[ax.get_legend() for ax in fig.axes]] if legend for t in
              legend.get_texts()]  # fmt: skip
    for text in texts:
        if text.get_visible() and text.get_text():
            box = text.get_window_extent(renderer)
            assert box.x0 >= page.x0 - 2 and box.x1 <= page.x1 + 2 and box.y0 >= page.y0 - 2, (kind, text)
    assert captions(fig), f"{kind} has no caption"


def test_curves_set_points_at_one_budget_side_by_side(study, tmp_path, monkeypatch):
    """LoRA r=8, prompt (32 vectors) and APET(lora) train 12,288 PET parameters: drawn at one x they hid each
    other. They stay at their budget in the data and are set apart on the page, each with its own marker."""
    from analysis.curves import DODGE_PT

    fig = drawn(monkeypatch, tables(study)["matched"], "curves", tmp_path / "c.png", "method != 'full'")
    ax = fig.axes[0]  # minilm-l1
    lines = {c.get_label(): c.lines[0] for c in ax.containers}
    budget = 12_288 + 1925
    crowded = ["apet", "lora", "prompt"]
    assert all(list(lines[m].get_xdata()) == [budget] for m in crowded)
    xs = sorted(lines[m].get_transform().transform((budget, 0.5))[0] for m in crowded)
    assert min(np.diff(xs)) >= DODGE_PT * fig.dpi / 72 * 0.99  # apart on the page by DODGE_PT points
    assert len({lines[m].get_marker() for m in lines}) == len(lines)
    assert "set side by side" in captions(fig)


def test_gap_has_bars_of_the_seed_std_of_the_difference(study, tmp_path, monkeypatch):
    fig = drawn(monkeypatch, tables(study)["matched"], "gap", tmp_path / "g.png")
    [ax] = fig.axes
    [bars] = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert bars.has_yerr
    lengths = [seg[1][1] - seg[0][1] for seg in bars.lines[2][0].get_segments()]
    expected = np.hypot(0.02, 0.04)  # full FT's seed std, prompt's
    assert lengths == pytest.approx([2 * expected] * 3, abs=1e-6)
    assert [round(y, 6) for y in bars.lines[0].get_ydata()] == [0.42] * 3  # full 0.82 - prompt 0.40, ...
    assert all("full − prompt" in t.get_text().replace("\n", " ") for t in ax.texts)
    assert "sqrt(std_best² + std_worst²)" in captions(fig)


def test_transfer_scales_colour_to_the_metric_and_says_which_test_sets(study, tmp_path, monkeypatch):
    fig = drawn(monkeypatch, tables(study)["transfer"], "transfer", tmp_path / "t.png")
    ax = fig.axes[0]
    [image] = ax.get_images()
    assert image.get_clim() == (0.0, 1.0)  # not 0.38-0.42 stretched over every colour
    outlined = [p for p in ax.patches if isinstance(p, matplotlib.patches.Rectangle)]
    assert sorted((p.get_x() + 0.44, p.get_y() + 0.44) for p in outlined) == [(0, 0), (1, 1)]
    note = captions(fig)
    assert "outlined diagonal: each run's own test score" in note and "colour spans 0-1" in note
    assert "bbc_news 30 (own) vs 200 (transfer)" in note


def test_pareto_caption_claims_no_error_bars(study, tmp_path, monkeypatch):
    fig = drawn(monkeypatch, tables(study)["matched"], "pareto", tmp_path / "p.png")
    [ax] = fig.axes
    assert not [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert "bars" not in captions(fig) and "mean over 3 runs" in captions(fig)


def test_generalization_names_methods_and_colours_backbones(study, tmp_path, monkeypatch):
    fig = drawn(monkeypatch, tables(study)["matched"], "generalization", tmp_path / "g.png")
    [ax] = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "adapter",
        "apet",
        "bitfit",
        "full",
        "lora",
        "prompt",
    ]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(BACKBONES)  # by size
    assert "backbone.name" not in captions(fig) + " ".join(t.get_text() for t in ax.get_xticklabels())


def test_ranks_sort_by_value(study, tmp_path, monkeypatch):
    ranks = tables(study)["ranks"]
    fig = drawn(monkeypatch, ranks, "convergence", tmp_path / "v.png")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["lora, r=1", "lora, r=8", "lora, r=32"]
    fig = drawn(monkeypatch, ranks, "generalization", tmp_path / "g.png")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["lora (method.r=1)", "lora (method.r=8)", "lora (method.r=32)"]


def test_apet_view_has_a_caption_and_bars_on_its_gap(study, tmp_path, monkeypatch):
    fig = drawn(monkeypatch, tables(study)["matched"], "apet", tmp_path / "a.png")
    note = captions(fig)
    assert "mean over 3 seeds each" in note and "APET(X): APET given X's parameter count" in note
    gap_ax = fig.axes[1]
    [bars] = [c for c in gap_ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert bars.has_yerr


@pytest.mark.parametrize("suffix", [".svg", ".pdf", ".png"])
def test_figures_are_written_in_the_formats_readme_names(study, tmp_path, suffix):
    path = plot(tables(study)["matched"], "curves", tmp_path / f"x{suffix}")
    head = path.read_bytes()[:200]
    assert {".svg": b"<svg", ".pdf": b"%PDF", ".png": b"PNG"}[suffix] in head


def test_an_unknown_figure_format_names_the_formats(study, tmp_path):
    from petsweep.spec.errors import PetsweepError

    with pytest.raises(PetsweepError, match=r"-o .*x\.jpg: unknown figure format; use \.png, \.pdf, \.svg"):
        plot(tables(study)["matched"], "curves", tmp_path / "x.jpg")


def line_colours(ax) -> dict[str, str]:
    """label -> colour of each method line an axes drew (error bars, or plain lines for convergence)."""
    from matplotlib.colors import to_hex

    lines = {c.get_label(): c.lines[0] for c in ax.containers}
    lines |= {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    return {text: to_hex(line.get_color()) for text, line in lines.items()}


def assert_one_colour_per_line(fig, gone):
    """Line `gone` is missing from the first panel only, and every line has one colour in every panel, the
    legend's (#26: colours came from each panel's own draw order, the legend from the first panel)."""
    from matplotlib.colors import to_hex

    [legend] = fig.legends

    def method(text):  # not a reference line (fixed colours of their own)
        return text != "random guess" and not text.startswith(("full FT", "head only"))

    legend_colours = {
        text.get_text(): to_hex(handle.get_color())
        for text, handle in zip(legend.get_texts(), legend.legend_handles)
        if method(text.get_text())
    }
    panels = [{t: c for t, c in line_colours(ax).items() if method(t)} for ax in fig.axes if ax.axison]
    assert gone not in panels[0] and all(gone in panel for panel in panels[1:])
    for panel in panels:
        assert panel and set(panel) <= set(legend_colours)
        for text, colour in panel.items():
            assert colour == legend_colours[text], text
    assert len(set(legend_colours.values())) == len(legend_colours)  # a colour per line


@pytest.mark.parametrize(
    ("kind", "source", "where", "gone"),
    [
        ("curves", "matched", "not (backbone == 'minilm-l1' and method == 'bitfit')", "bitfit"),
        ("convergence", "ranks", "not (backbone == 'minilm-l1' and `cfg.method.r` == 1)", "lora, r=1"),
    ],
)
def test_a_line_keeps_its_colour_in_every_panel_and_in_the_legend(study, tmp_path, monkeypatch, kind, source,
                                                                  where, gone):  # fmt: skip
    assert_one_colour_per_line(
        drawn(monkeypatch, tables(study)[source], kind, tmp_path / "f.png", where), gone
    )


def test_transfer_keeps_variants_apart_and_names_them(tmp_path, monkeypatch):
    """LoRA at two learning rates, one budget (#26): two matrices, each its own runs' mean, not one pooled."""
    scores = {0.001: (0.42, 0.38), 0.01: (0.70, 0.60)}  # own test score on bbc_news, on bbc_headlines
    for lr, (own, other) in scores.items():
        for seed in SEEDS:
            name = f"lr{lr}-s{seed}"
            write_record(tmp_path / "runs", name, backbone="minilm-l1", method={"name": "lora", "r": 8},
                         pet=12_288, score=own, seed=seed, lr=lr)  # fmt: skip
            (tmp_path / "runs" / name / "transfer").mkdir()
            write_json(
                tmp_path / "runs" / name / "transfer" / "bbc_headlines.json",
                {"run_id": name, "source_task": "bbc_news", "task": "bbc_headlines", "metric": "accuracy",
                 "score": other, "random_guess_score": 0.2, "test_examples": 200},
            )  # fmt: skip
    fig = drawn(monkeypatch, collect([tmp_path / "runs"]), "transfer", tmp_path / "t.png")
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 2
    cells = {ax.get_title(): sorted(t.get_text() for t in ax.texts) for ax in panels}
    assert cells == {
        "lora, 14,213 params\ntrainer.lr=0.001": ["0.380", "0.420"],
        "lora, 14,213 params\ntrainer.lr=0.01": ["0.600", "0.700"],
    }
    assert "mean over 3 runs" in captions(fig) and "kept apart: trainer.lr" in captions(fig)


def test_a_caption_says_a_point_of_one_run_has_no_bar():
    """#26 review: a point of one run drew no bar, which read as a spread of zero."""
    import pandas as pd

    from analysis.grouping import pooled_note

    assert "(a point of one run has no bar)" in pooled_note([], pd.Series([1, 3]))
    assert "no bar" not in pooled_note([], pd.Series([2, 3]))


# --- #26's last review, on the demo study's own table (docs/cpu_demo/table.csv, 213 real runs) and the plot
# commands of docs/cpu_demo/reproduce.sh

DEMO_TABLE = Path(__file__).resolve().parents[1] / "docs" / "cpu_demo" / "table.csv"
STRUCTURED = "task == 'bbc_news' and method != 'apet'"
DEMO_FIGURES = [  # (kind, --where) as reproduce.sh draws them
    ("curves", STRUCTURED),
    ("pareto", STRUCTURED),
    ("gap", STRUCTURED),
    ("threshold", STRUCTURED),
    ("apet", "task == 'bbc_news'"),
    ("curves", "task == 'bbc_news' and method == 'apet'"),
    ("threshold", "task == 'bbc_news' and method in ['apet', 'full']"),
]


@pytest.fixture(scope="module")
def demo():
    from analysis import load

    return load(DEMO_TABLE)


@pytest.fixture(autouse=True)
def _close_figures():
    """drawn() keeps each figure open to read it: close them after each test."""
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def marker_centres(ax) -> list:
    """Where each point of an axes is drawn (display coordinates), error-bar caps left out."""
    centres = []
    for line in ax.get_lines():
        if line.get_visible() and line.get_marker() not in (None, "", "None", " ", "_", "|"):
            xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
            centres += [tuple(p) for p in xy if np.isfinite(p).all()]
    return centres


def line_points(ax) -> np.ndarray:
    """Points every 2 px along each line and error bar of an axes (display coordinates), caps included."""
    from matplotlib.collections import LineCollection

    paths = []
    for line in ax.get_lines():
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
        if line.get_visible() and line.get_linestyle() not in ("None", "", " "):
            paths.append(xy)
        elif line.get_visible() and line.get_marker() == "_":  # caps
            half = line.get_markersize() * ax.figure.dpi / 72 / 2
            paths += [np.array([[x - half, y], [x + half, y]]) for x, y in xy]
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            transform = collection.get_transform()
            paths += [transform.transform(np.asarray(seg, dtype=float)) for seg in collection.get_segments()]
    points = [np.empty((0, 2))]
    for xy in paths:
        xy = xy[np.isfinite(xy).all(axis=1)]
        for a, b in zip(xy[:-1], xy[1:]):
            points.append(a + np.linspace(0, 1, max(2, int(np.hypot(*(b - a)) / 2)))[:, None] * (b - a))
    return np.concatenate(points)


@pytest.mark.parametrize(("kind", "where"), DEMO_FIGURES)
def test_demo_labels_clear_each_other_the_points_and_the_lines(demo, tmp_path, monkeypatch, kind, where):
    """#26 review: end-of-line labels collided, text and legends sat over points and lines (rank labels in
    curves, backbone names in gap, "not reached" in threshold, the legends inside apet's and threshold's
    axes). On the demo data no two labels overlap, and no label or legend covers a point; labels cross no
    line either."""
    fig = drawn(monkeypatch, demo, kind, tmp_path / f"{kind}.png", where)
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        texts = [t for t in ax.texts if t.get_visible() and t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in texts]
        for i, a in enumerate(boxes):
            for j in range(i + 1, len(boxes)):
                assert not a.overlaps(boxes[j]), (kind, texts[i].get_text(), texts[j].get_text())
        legends = [ax.get_legend()] if ax.get_legend() else []
        covers = boxes + [legend.get_window_extent(renderer) for legend in legends]
        for box, what in zip(covers, [t.get_text() for t in texts] + ["legend"] * len(legends)):
            assert not [p for p in marker_centres(ax) if box.contains(*p)], (kind, what)
        crossing = line_points(ax)
        for text, box in zip(texts, boxes):
            inside = [p for p in crossing if box.x0 < p[0] < box.x1 and box.y0 < p[1] < box.y1]
            assert not inside, (kind, text.get_text(), len(inside))


def test_a_caption_names_apet_seed_only_where_apet_runs_are_drawn(demo, tmp_path, monkeypatch):
    """#26 review: 'pooled over seed, apet.seed' under figures without an APET run."""
    for kind in ("curves", "gap", "generalization"):
        assert "pooled over seed only" in captions(
            drawn(monkeypatch, demo, kind, tmp_path / "f.png", STRUCTURED)
        )
    transfer = drawn(
        monkeypatch, demo, "transfer", tmp_path / "t.png", "backbone == 'minilm-l6' and method != 'apet'"
    )
    assert "apet.seed" not in captions(transfer)
    apet = drawn(monkeypatch, demo, "curves", tmp_path / "a.png", "task == 'bbc_news' and method == 'apet'")
    assert "pooled over seed, apet.seed only" in captions(apet)


def test_figures_without_bars_say_nothing_of_bars(demo, tmp_path, monkeypatch):
    """#26 review: pareto's caption promised what it did not draw: of points of one run each it said '(a point
    of one run has no bar)' under a figure without bars; the transfer matrix too."""
    one_seed = demo[demo["seed"] == 1]
    fig = drawn(monkeypatch, one_seed, "pareto", tmp_path / "p.png", STRUCTURED)
    [ax] = fig.axes
    assert not [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert "bar" not in captions(fig) and "mean over 1 runs each" in captions(fig)
    fig = drawn(monkeypatch, one_seed, "transfer", tmp_path / "t.png", "backbone == 'minilm-l6'")
    assert "bar" not in captions(fig)
    fig = drawn(monkeypatch, one_seed, "curves", tmp_path / "c.png", STRUCTURED)
    assert "(a point of one run has no bar)" in captions(fig)  # where bars are drawn, it is said


def test_threshold_figure_names_its_targets_and_marks_thresholds_at_the_smallest_budget(
    demo, tmp_path, monkeypatch
):
    """#26 review: the figure named no epsilon, and a threshold equal to the smallest budget tried (every
    budget beats random guessing on the demo) was drawn as if measured there. It is hollow with an arrow
    down, the legend says what that means, and the caption names both targets with their scores."""
    from analysis import thresholds

    fig = drawn(monkeypatch, demo, "threshold", tmp_path / "t.png", STRUCTURED)
    [ax] = fig.axes
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "high: mean within 0.01 of full FT" in legend and "low: mean beats random guess" in legend
    assert "hollow, arrow down: at or below the smallest budget tried" in legend
    note = captions(fig)
    assert "beats random guessing (0.199)" in note and "within 0.01 of full FT's (0.770-0.940" in note
    found = thresholds(demo.query(STRUCTURED))
    at_start = int((found["low_threshold"] == found["smallest_budget"]).sum())
    at_start += int((found["high_threshold"] == found["smallest_budget"]).sum())
    assert at_start == 9  # all 8 low thresholds and LoRA's high one on one layer
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white" and len(ln.get_xdata())]
    assert sum(len(ln.get_xdata()) for ln in hollow) == at_start
    renderer = fig.canvas.get_renderer()
    down = [t for t in ax.texts if t.arrow_patch is not None and t.xy[1] < t.xyann[1]]
    assert len(down) == at_start and all(t._check_xy(renderer) for t in down)  # drawn: inside the axes
    [reached] = [t for t in ax.texts if t.get_text() == "not\nreached"]
    assert (
        reached.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    )  # beside, over no point


def test_curves_wrap_a_wide_row_of_panels(demo, tmp_path, monkeypatch):
    """#26 review: four backbones drew four panels in one row 18 inches wide; they wrap at MAX_COLUMNS a row
    (balanced: 2 x 2), one y scale within the task."""
    fig = drawn(monkeypatch, demo, "curves", tmp_path / "c.png", STRUCTURED)
    columns = {ax.get_subplotspec().colspan.start for ax in fig.axes}
    rows = {ax.get_subplotspec().rowspan.start for ax in fig.axes}
    assert len(fig.axes) == 4 and columns == {0, 1} and rows == {0, 1}
    assert all(fig.axes[0].get_shared_y_axes().joined(fig.axes[0], ax) for ax in fig.axes)
    assert [ax.get_ylabel() for ax in fig.axes] == ["test accuracy", "", "test accuracy", ""]
    assert fig.get_figwidth() <= 10


def test_the_transfer_figure_is_as_tall_as_its_matrices(study, demo, tmp_path, monkeypatch):
    """#26 review: 4.8 inches a row of 1 x 2 matrices (29 inches for the demo's 17)."""
    fig = drawn(monkeypatch, tables(study)["transfer"], "transfer", tmp_path / "t.png")  # one 2 x 2 matrix
    assert fig.get_figheight() <= 4.0
    fig = drawn(monkeypatch, demo, "transfer", tmp_path / "d.png", "backbone == 'minilm-l6'")
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 17 and fig.get_figheight() <= 14
    renderer = fig.canvas.get_renderer()
    titles = [ax.title.get_window_extent(renderer) for ax in panels]
    assert not any(a.overlaps(b) for i, a in enumerate(titles) for b in titles[i + 1 :])


def test_convergence_names_budgets_as_whole_numbers(tmp_path, monkeypatch):
    """#26 review: "6,021.0 params" in the legend where the table's trainable_params column is float (a
    column with gaps, as a CSV with cancelled runs loads)."""
    for pet in (4_096, 8_064):
        for seed in SEEDS:
            write_record(tmp_path / "runs", f"bitfit-{pet}-s{seed}", backbone="minilm-l1",
                         method={"name": "bitfit"}, pet=pet, score=0.5, seed=seed)  # fmt: skip
    table = collect([tmp_path / "runs"])
    table["trainable_params"] = table["trainable_params"].astype(float)
    fig = drawn(monkeypatch, table, "convergence", tmp_path / "c.png")
    legend = sorted(t.get_text() for lg in fig.legends for t in lg.get_texts())
    assert legend == [f"bitfit, {4_096 + HEAD:,} params", f"bitfit, {8_064 + HEAD:,} params"], legend


def test_gap_compares_methods_each_at_its_best_variant(demo, tmp_path, monkeypatch):
    """#26 review: on the demo, gap drew apet(scale=100000) - apet(scale=100), one method's two budgets, as a
    "method gap". A method stands for itself at its best variant, and the caption says so."""
    fig = drawn(monkeypatch, demo, "gap", tmp_path / "g.png", where="task == 'bbc_news'")
    [ax] = fig.axes
    for text in ax.texts:
        best, worst = text.get_text().replace("\n", " ").split(" − ")
        assert best.split()[1] != worst.split()[0], (
            text.get_text()
        )  # "minilm-l1 apet (...)" vs "bitfit (...)"
    done = demo[(demo["status"] == "COMPLETED") & (demo["task"] == "bbc_news")]
    small = done[done["backbone"] == "minilm-l1"]
    variant = ["cfg.apet.scale", "cfg.method.r", "cfg.method.lr"]
    means = small.groupby(["method", *variant], dropna=False)["score"].mean()
    per_method = means.groupby(level="method").max()
    bars = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)][0]
    assert bars.lines[0].get_ydata()[0] == pytest.approx(per_method.max() - per_method.min())
    assert "each method at its best variant" in captions(fig)


def write_mixed(root):
    """Runs whose variant labels are long (#26 review's mixed table): every method under two setups (batch
    size, test set, learning rate, steps), LoRA at two ranks, APET(lora) beside LoRA at r=8."""
    setups = [  # batch size, test size, learning rate, eval steps, score offset
        (16, 30, 1e-3, (10, 20, 40), 0.0),
        (32, 31, 3e-4, (5, 10), -0.1),
    ]
    for backbone in ("minilm-l1", "minilm-l2"):
        layers = int(backbone[-1])
        for (batch, size, lr, steps, offset), (seed, noise) in itertools.product(setups, zip(SEEDS, NOISE)):
            setup = dict(seed=seed, batch_size=batch, test_size=size, lr=lr, steps=steps)
            tag = f"{backbone}-b{batch}-s{seed}"
            for r in (1, 8):
                score = 0.6 + 0.02 * r**0.5 + offset + noise
                write_record(root, f"{tag}-lora-r{r}", backbone=backbone, method={"name": "lora", "r": r},
                             pet=1536 * r * layers, score=score, **setup)  # fmt: skip
            score = 0.55 + offset + noise
            write_record(root, f"{tag}-apet", backbone=backbone, method={"name": "apet"},
                         pet=1536 * 8 * layers, score=score, apet_scale="lora", **setup)  # fmt: skip
            for name in ("bitfit", "prompt", "full"):
                pet = 8064 * layers if name != "full" else BACKBONES[backbone]
                write_record(root, f"{tag}-{name}", backbone=backbone, method={"name": name}, pet=pet,
                             score=0.5 + offset + noise, **setup)  # fmt: skip
    return root


def assert_text_on_page(fig, kind):
    """Every drawn text (titles, labels, tick labels in view, legends, annotations, captions) inside the
    figure's box."""
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    texts = [*fig.texts, *[t for legend in fig.legends for t in legend.get_texts()]]
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts, *shown_tick_labels(ax)]
        if ax.get_legend():
            texts += [*ax.get_legend().get_texts(), ax.get_legend().get_title()]
    for text in texts:
        if text.get_visible() and text.get_text().strip():
            box = text.get_window_extent(renderer)
            inside = (
                page.x0 - 1 <= box.x0
                and box.x1 <= page.x1 + 1
                and page.y0 - 1 <= box.y0
                and box.y1 <= page.y1 + 1
            )
            assert inside, (kind, text.get_text()[:60], box, page)


MIXED_KINDS = ["curves", "pareto", "gap", "generalization", "threshold", "convergence", "apet"]


@pytest.mark.parametrize("kind", MIXED_KINDS)
def test_long_variant_labels_stay_on_the_page(tmp_path, monkeypatch, kind):
    """#26 review: gap's labels ran off the canvas, legends of curves, convergence, apet and generalization
    were cut where variant labels are long; every text of every kind stays inside the figure."""
    table = collect([write_mixed(tmp_path / "mixed")])
    fig = drawn(monkeypatch, table, kind, tmp_path / f"{kind}.png")
    assert_text_on_page(fig, kind)


@pytest.mark.parametrize("kind", ["curves", "pareto", "gap", "generalization", "threshold", "apet"])
def test_demo_text_stays_on_the_page(demo, tmp_path, monkeypatch, kind):
    """The demo table, both tasks where the kind takes several (curves), else the article task."""
    where = None if kind in ("curves", "threshold") else "task == 'bbc_news'"
    assert_text_on_page(drawn(monkeypatch, demo, kind, tmp_path / f"{kind}.png", where=where), kind)


def test_curves_draw_only_the_panels_a_task_has_and_no_gap_under_the_legend(demo, tmp_path, monkeypatch):
    """#26 review: the demo's headline task (one backbone) sat in column 2 under three empty cells, ~700 px
    below the legend."""
    fig = drawn(monkeypatch, demo, "curves", tmp_path / "c.png")
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == len(fig.axes) == 5  # 1 headline panel + 4 article panels, no empty cells
    headline = [ax for ax in panels if ax.get_title().startswith("bbc_headlines")]
    assert len(headline) == 1 and headline[0].get_subplotspec().colspan.start == 0
    renderer = fig.canvas.get_renderer()
    legend_bottom = fig.legends[0].get_window_extent(renderer).y0
    top_panel = max(ax.get_tightbbox(renderer).y1 for ax in panels)
    assert 0 <= legend_bottom - top_panel <= 0.25 * fig.dpi, (
        legend_bottom,
        top_panel,
    )  # a quarter inch at most
