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
