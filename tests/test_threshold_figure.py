"""The threshold search's figure (analysis.threshold_figure), read through matplotlib's objects: a target the
search did not reach within its interval is labelled so, inside the axes."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from analysis.threshold_figure import threshold_figure


def drawn(monkeypatch, table, path):
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    threshold_figure(table, path)
    figures[-1].canvas.draw()
    return figures[-1]


def test_a_target_not_reached_is_labelled_inside_the_axes(tmp_path, monkeypatch):
    table = pd.DataFrame(
        [
            dict(cell="backbone=a", target="full-0.01", estimate=300.0, ci_lo=100.0, ci_hi=400.0,
                 backbone_params=1e6, status="found"),
            dict(cell="backbone=b", target="full-0.01", estimate=math.inf, ci_lo=1600.0, ci_hi=math.inf,
                 backbone_params=2e6, status="not reached"),
        ]
    )  # fmt: skip
    fig = drawn(monkeypatch, table, tmp_path / "t.png")
    [ax] = fig.axes
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    [label] = [t for t in ax.texts if t.get_text() == "not reached"]
    shown = label.get_window_extent(renderer)
    assert label.get_visible() and shown.overlaps(box)
    assert shown.x0 >= fig.bbox.x0 and shown.x1 <= fig.bbox.x1 and shown.y1 <= fig.bbox.y1  # on the page
    arrows = [t for t in ax.texts if t.arrow_patch is not None]
    assert arrows and all(a._check_xy(renderer) for a in arrows)  # drawn: matplotlib skips one outside
    [line] = ax.get_lines()
    top = line.get_ydata()[1]
    assert ax.get_ylim()[1] >= top * 1.5  # the arrow up from the open end fits
    assert label.xy[0] == 2e6  # at the backbone whose target was not reached


def test_a_threshold_at_the_first_budget_is_marked_and_the_caption_names_the_targets(tmp_path, monkeypatch):
    """#26 review: a target the search's first budget already reached (status 'at or below the interval',
    interval from 0) was drawn as if measured, its bar down to 1 stretching the axis; the targets' epsilons
    were named nowhere but in legend codes. Two cells at the same estimates no longer hide each other."""
    rows = []
    for method in ("lora", "bitfit"):
        for backbone, size in (("a", 1e6), ("b", 2e6)):
            cell = f"backbone={backbone} method={method}"
            rows += [
                dict(cell=cell, target="random+0.05", target_score=0.25, estimate=256.0, ci_lo=0.0,
                     ci_hi=256.0, backbone_params=size, status="at or below the interval"),
                dict(cell=cell, target="full-0.01", target_score=0.93, estimate=3000.0, ci_lo=1000.0,
                     ci_hi=4000.0, backbone_params=size, status="found"),
            ]  # fmt: skip
    fig = drawn(monkeypatch, pd.DataFrame(rows), tmp_path / "t.png")
    [ax] = fig.axes
    assert ax.get_ylim()[0] > 10  # no bar down to 1
    segments = [s for c in ax.collections for s in c.get_segments()]
    assert min(min(y for _, y in s) for s in segments) >= 256.0  # nothing drawn below the first budget
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white"]
    assert len(hollow) == 4  # each at-or-below point
    renderer = fig.canvas.get_renderer()
    down = [t for t in ax.texts if t.arrow_patch is not None and t.xy[1] < t.xyann[1]]
    assert len(down) == 4 and all(t._check_xy(renderer) for t in down)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "≤ smallest budget tried (hollow, arrow down)" in legend
    note = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert "full-0.01: full fine-tuning's mean score minus 0.01 (0.930)" in note
    assert "random+0.05: the random-guess score plus 0.05 (0.250)" in note
    lines = [ln for ln in ax.get_lines() if ln not in hollow and len(ln.get_xdata()) == 2]
    at_256 = [ln for ln in lines if list(ln.get_ydata()) == [256.0, 256.0]]
    assert len(at_256) == 2
    xs = [ln.get_transform().transform((1e6, 256.0))[0] for ln in at_256]
    assert abs(xs[0] - xs[1]) >= 7 * fig.dpi / 72 * 0.99  # set apart, not one behind the other


def test_an_undecided_interval_open_at_zero_is_not_drawn_as_at_or_below(tmp_path, monkeypatch):
    """#24 review round 3, H7: every row whose interval opened at 0 was drawn hollow with the legend and
    caption of 'at or below the interval', an undecided row whose estimate lies above the smallest probe
    included."""
    table = pd.DataFrame(
        [
            dict(cell="backbone=a", target="full-0.01", target_score=0.8, estimate=9854.0, ci_lo=0.0,
                 ci_hi=16128.0, backbone_params=1e6, status="undecided"),
            dict(cell="backbone=b", target="full-0.01", target_score=0.8, estimate=3000.0, ci_lo=1000.0,
                 ci_hi=4000.0, backbone_params=2e6, status="found"),
        ]
    )  # fmt: skip
    fig = drawn(monkeypatch, table, tmp_path / "t.png")
    [ax] = fig.axes
    assert not [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white"]  # nothing hollow
    assert "≤ smallest budget tried (hollow, arrow down)" not in [
        t.get_text() for t in fig.legends[0].get_texts()
    ]
    assert "at or below" not in " ".join(t.get_text() for t in fig.texts)
    assert [t for t in ax.texts if t.get_text() == "undecided"]  # the open end says what it is
    down = [t for t in ax.texts if t.arrow_patch is not None and t.xy[1] < t.xyann[1]]
    assert len(down) == 1 and down[0].xy[0] == 1e6
