"""`petsweep plan` costs: calibrated from finished runs (training and evaluation), else FLOPs per device."""

from __future__ import annotations

from launchers.costing import device_kind, estimate
from launchers.expand import expand
from launchers.planning import plan
from launchers.report import estimate_hours
from petsweep.cli import sweep_arguments
from petsweep.compose import compose
from petsweep.records.status import State
from petsweep.run.app import run


def _planned(overrides: list[str]):
    runs = plan(expand(overrides), compose)
    estimate_hours(runs)
    return runs


def test_cpu_runs_are_costed_at_a_cpu_rate_not_a_gpu_one(tmp_path):
    # the default job (MiniLM-L6, 100 LoRA steps on CPU, measured at 40-80 s), with no finished run beside it
    [planned] = _planned([f"paths.runs_root={tmp_path}"])
    assert device_kind(planned.cfg) == "cpu" and planned.extra["guess"]
    assert 10 < planned.extra["hours"] * 3600 < 600, planned.extra  # was 0.0000 h at a GPU's FLOP/s


def test_a_finished_run_calibrates_its_siblings_including_evaluation(tiny):
    base = tiny("encoder", "trainer.max_steps=12", "trainer.eval_every=2")
    result = run(compose([*base, "seed=1"]))
    runs = _planned([*base, "seed=1,2"])
    done, new = sorted(runs, key=lambda r: r.status)
    assert (done.status, new.status) == (State.COMPLETED, State.NEW) and not new.extra["guess"]
    assert new.extra["basis"].startswith("measured (1 run(s)")
    work = result["train_time_s"] + result["dev_eval_time_s"] + result["final_eval_time_s"]
    work += result["time_to_first_step_s"]  # and its start-up (#26)
    assert abs(new.extra["hours"] * 3600 - work) < 1e-6 * work  # same config: exactly the measured work
    # twice the steps: twice the training, evaluations at twice as many points
    [longer] = _planned([*base, "seed=3", "trainer.max_steps=24"])
    startup = result["time_to_first_step_s"]  # the same for both: what scales is training and evaluation
    assert longer.extra["hours"] * 3600 - startup > (new.extra["hours"] * 3600 - startup) * 1.5


def test_evaluation_is_counted_for_text_to_text_candidates():
    cfg = compose(["backbone=t5-base", "task=rte"])
    from petsweep.spec.identity import plain

    data = plain(cfg)
    slow_eval = {**data, "trainer": {**data["trainer"], "eval_every": 1}}
    assert estimate(slow_eval, 10**8, [])[0] > estimate(data, 10**8, [])[0] * 1.2


def test_planned_runs_resolve_interpolations_as_hydra_does():
    """A value that interpolates another (from a preset or the command line) is resolved per run: the plan's
    directory and hash are those of the run Hydra composes, not of the first run's resolved value."""
    sweeps = {  # where the interpolation is written: (overrides, runs expected)
        "preset": (["+sweep=cpu_demo_apet", "backbone=minilm-l1", "apet.scale=100"], 6),  # 3 seeds x 2 lrs
        "command line": (["seed=${trainer.max_steps}", "trainer.max_steps=7,9"], 2),
    }
    for where, (overrides, expected) in sweeps.items():
        runs = plan(expand(*sweep_arguments(overrides)), compose)
        assert len({r.run_hash for r in runs}) == len(runs) == expected, where
        for r in runs:
            composed = compose(r.overrides)
            assert r.cfg["seed"] == composed.seed != 0, where
            assert r.path.name.endswith(f"-s{composed.seed}-{r.run_hash[:12]}"), where


def test_only_a_method_that_trains_every_weight_is_costed_at_six_flops_per_param_and_token():
    """Full fine-tuning's backward computes every weight's gradient (PETMethod.trains_every_weight, which
    costing.py asks instead of the method's name): 6 x params per trained token, the others 4; a record of a
    method this checkout does not know is costed as the others."""
    from launchers.costing import _frozen_factor
    from petsweep.methods import METHODS

    factors = {name: _frozen_factor(name) for name in METHODS.names()}
    assert {name for name, factor in factors.items() if factor == 6} == {"full"}
    assert set(factors.values()) == {4, 6} and _frozen_factor("a_retired_method") == 4
