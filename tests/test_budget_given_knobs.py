"""A knob given beside `budget=` (#24 hostile review F7): `method=lora budget=bitfit method.r=5` ran r=3,
the chosen value, silently. Now one line naming both keys, exit 2, nothing run."""

from __future__ import annotations

import pytest
from conftest import run_cli, sweep_argv
from omegaconf import OmegaConf

from petsweep.compose import compose
from petsweep.model.resolve import resolve_run, run_hash
from petsweep.spec.errors import ConfigError

LINE = "method.r=5: and budget='bitfit' both size lora; give one (it chose method.r=3, method.plus_one=0)"


@pytest.mark.parametrize(
    ("method", "given"),
    [
        ("lora", "method.r=5"),
        ("lora", "method.plus_one=2"),
        ("adapter", "method.bottleneck=7"),
        ("prompt", "method.length=5"),
        ("prefix", "method.length=3"),
        ("dept", "method.rank=4"),
        ("selective_module", "method.fraction=0.5"),
        ("selective_module", "method.budget=99"),
    ],
)
def test_a_knob_given_beside_budget_is_refused_in_one_line(method, given):
    # selective_module reaches no budget=bitfit on MiniLM (whole modules); 1,000,000 on minilm-l6 it does
    budget, backbone = ("1000000", "minilm-l6") if method == "selective_module" else ("'bitfit'", "minilm-l1")
    with pytest.raises(ConfigError) as err:
        resolve_run(compose([f"method={method}", f"budget={budget}", f"backbone={backbone}", given]))
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{given}: and budget={budget} both size {method}; give one")


def test_the_default_or_the_chosen_value_beside_budget_is_the_budget_run():
    """The method's default cannot be told from the composed config (and a run's config.yaml holds the
    chosen values, which must re-resolve): both are the budget's run, same id; ids are unchanged."""
    budget = run_hash(compose(["method=lora", "budget=bitfit", "backbone=minilm-l1"]))[:12]
    for given in ("method.r=8", "method.r=3", "method.plus_one=0"):  # the default, the chosen r=3
        assert run_hash(compose(["method=lora", "budget=bitfit", "backbone=minilm-l1", given]))[:12] == budget
    assert budget == "e3d6d4b959f8"  # docs/budgets.md's plan
    assert run_hash(compose([]))[:12] == "9deb1d1591df"
    cfg = compose(["method=lora", "budget=bitfit", "backbone=minilm-l1"])
    cfg = OmegaConf.create(resolve_run(cfg).config)  # the chosen knobs written in: a run's config.yaml
    assert (cfg.method.r, cfg.method.plus_one, cfg.budget) == (3, 0, "bitfit")
    assert resolve_run(cfg).budget.knobs == {"r": 3, "plus_one": 0} and run_hash(cfg)[:12] == budget
    # DePT's configured length: the older rules start from it (not refused there); under the default
    # budget_rule=global it only breaks ties, so a given one is refused (#24 review round 3, H3)
    dept = ["method=dept", "budget=bitfit", "backbone=minilm-l1", "method.length=40"]
    resolve_run(compose([*dept, "budget_rule=nearest"]))
    with pytest.raises(ConfigError) as err:
        resolve_run(compose(dept))
    assert str(err.value).startswith("method.length=40: and budget='bitfit' both size dept; give one")
    chosen = resolve_run(compose(dept[:3])).budget.knobs  # the chosen length beside budget= is its run
    assert resolve_run(compose([*dept[:3], f"method.length={chosen['length']}"])).budget.knobs == chosen


def test_a_run_and_a_sweep_with_a_knob_beside_budget_stop_before_anything_runs(tiny_conf, tmp_path):
    single = run_cli(
        "run.py",
        "method=lora",
        "budget=bitfit",
        "backbone=minilm-l1",
        "method.r=5",
        f"paths.runs_root={tmp_path}",
    )
    assert single.returncode == 2 and single.stderr.strip().splitlines() == [f"error: {LINE}"], single.stderr
    sweep = run_cli(*sweep_argv(tiny_conf, tmp_path, "backbone=tiny-bert", "method=lora", "budget=500",
                                "method.r=5", "seed=0,1"))  # fmt: skip
    assert sweep.returncode == 2, sweep.stdout[-2000:] + sweep.stderr[-2000:]
    errors = [line for line in sweep.stderr.splitlines() if line.startswith("error: ")]
    assert errors and errors[0].startswith("error: method.r=5: and budget=500 both size lora; give one")
    assert not list(tmp_path.rglob("result.json")) and not list(tmp_path.rglob("config.yaml"))
