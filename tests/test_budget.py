"""`budget=`: a matched parameter budget for every method with a size knob (petsweep/budget.py)."""

from __future__ import annotations

import pytest

from petsweep.config import compose, resolve_run
from petsweep.identity import run_hash


def _id(*overrides: str) -> str:
    return run_hash(compose(list(overrides)))[:12]


def test_the_default_job_keeps_its_id():
    assert _id() == "9deb1d1591df"


@pytest.mark.parametrize("value", ["5000", "bitfit"])
def test_apet_budget_is_a_spelling_of_apet_scale(value):
    budget = ["method=apet", f"budget={value}", "backbone=minilm-l1"]
    scale = ["method=apet", f"apet.scale={value}", "backbone=minilm-l1"]
    assert _id(*budget) == _id(*scale)
    assert resolve_run(compose(budget)).method.budget.k == resolve_run(compose(scale)).method.budget.k
    assert _id(*budget) != _id("method=apet", "budget=5001", "backbone=minilm-l1")


def test_an_apet_budget_is_recorded_as_apet_scale():
    cfg = compose(["method=apet", "budget=4096", "backbone=minilm-l1"])
    before = run_hash(cfg)
    resolve_run(cfg)  # what app.run does first: config.yaml then reads as the apet.scale spelling
    assert (cfg.apet.scale, cfg.budget, run_hash(cfg)) == (4096, None, before)
