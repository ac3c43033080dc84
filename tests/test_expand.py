"""Sweep expansion: Cartesian product, zipped axes, and their errors."""

from __future__ import annotations

import pytest

from launchers.expand import expand
from launchers.planning import plan
from petsweep.compose import compose
from petsweep.records.status import State
from petsweep.spec.errors import ConfigError


def test_product_of_axes_in_order():
    runs = expand(["method=lora,full", "seed=1,2", "trainer.max_steps=5"])
    assert runs == [
        ["method=lora", "seed=1", "trainer.max_steps=5"],
        ["method=lora", "seed=2", "trainer.max_steps=5"],
        ["method=full", "seed=1", "trainer.max_steps=5"],
        ["method=full", "seed=2", "trainer.max_steps=5"],
    ]


def test_zip_pairs_axes_instead_of_multiplying():
    runs = expand(
        ["method=lora,full", "trainer.max_steps=10,20", "seed=1,2"], zips=[["method", "trainer.max_steps"]]
    )
    assert sorted(map(sorted, runs)) == sorted(
        map(
            sorted,
            [
                ["method=lora", "trainer.max_steps=10", "seed=1"],
                ["method=lora", "trainer.max_steps=10", "seed=2"],
                ["method=full", "trainer.max_steps=20", "seed=1"],
                ["method=full", "trainer.max_steps=20", "seed=2"],
            ],
        )
    )


def test_command_line_wins_over_preset_axes():
    assert expand(["seed=1,2,3", "seed=7"]) == [["seed=7"]]


def test_zip_errors_are_one_line():
    with pytest.raises(ConfigError, match="method has 2, seed has 3 values"):
        expand(["method=lora,full", "seed=1,2,3"], zips=[["method", "seed"]])
    with pytest.raises(ConfigError, match="zip='task': is not a sweep axis; axes: method"):
        expand(["method=lora,full"], zips=[["method", "task"]])


def test_plan_dedupes_identical_configs_and_matches_hydra_composition(tmp_path):
    runs = plan(
        expand(["seed=1,1,2", "method=lora,bitfit", f"paths.runs_root={tmp_path}", "method.lr=0.01"]), compose
    )
    assert len(runs) == 4 and sum(r.duplicates for r in runs) == 2
    for run in runs:  # the cached composition gives exactly what Hydra composes for that run
        assert run.cfg == compose(run.overrides)
        assert run.status == State.NEW


def test_plan_names_the_bad_run():
    with pytest.raises(
        ConfigError, match=r"trainer.max_steps=0: must be a positive integer \(in run: .*max_steps=0"
    ):
        plan(expand(["trainer.max_steps=5,0", "seed=1"]), compose)
