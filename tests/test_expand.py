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


def test_an_axis_that_cannot_be_enumerated_or_gives_no_value_is_one_line():
    """R23 review F1, F8: expand enumerated these unguarded (a ValueError traceback, or an empty axis that
    petsweep plan then indexed); every entry enumerates axes through launchers.expand.sweep_values."""
    from petsweep.cli import GroupLister

    with pytest.raises(ConfigError, match=r"seed='range\(0,2,0\)': range\(\) arg 3 must not be zero"):
        expand(["seed=range(0,2,0)"])
    with pytest.raises(ConfigError, match=r"seed='range\(0,2,0.0\)': Invalid range"):
        expand(["seed=range(0,2,0.0)"])
    with pytest.raises(ConfigError, match=r"seed='range\(3,0\)': the range gives no value"):
        expand(["seed=range(3,0)"])
    overrides = ["method=glob(zzz*)"]
    with pytest.raises(ConfigError, match=r"method='glob\(zzz\*\)': glob\(\) matches no .*bitfit, .*lora"):
        expand(overrides, loader=GroupLister(overrides))
    assert expand(["seed=range(0,3,2)"]) == [["seed=0"], ["seed=2"]]


def test_deleting_a_key_is_refused_and_deleting_a_group_is_hydras():
    """R23 review F10, F11: ~seed was a KeyError traceback, and ~method.r trained the default run (the schema
    fills r back in) under another id; ~logger deletes the logger group's choice, as Hydra documents."""
    for deleted in ("~seed", "~method.r", "~trainer.head_lr=0.001"):
        key = deleted[1:].split("=")[0]
        with pytest.raises(ConfigError, match=rf"{key}='{deleted}': .*set it instead \({key}=<value>"):
            expand([deleted, "seed=1,2"])
    assert expand(["~logger", "seed=1"]) == [["~logger=null", "seed=1"]]  # Hydra: delete whatever is chosen
