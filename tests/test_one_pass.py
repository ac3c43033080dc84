"""How often the user's process composes and validates a run (#23: "a sweep run's config is validated once
per process it crosses at most, and composed once per run").

`python run.py` and `python run.py -m` run in a subprocess whose Hydra config loader
(`load_configuration`: every composition, Hydra's own and petsweep's) and `resolve_run` (every validation)
count their calls; the runs themselves train in their own processes (warm workers), which are not counted.
Measured before the counts were cut (tiny BERT): a plain run 1 validation and 1 composition; a 2-run sweep
(seed=1,2) 2 and 6; a 4-run sweep (method=lora,bitfit seed=1,2) 4 and 8. A sweep of petsweep's sweepers is
validated by its plan alone (run.py's preflight composes none of it and hands nothing to the sweeper).
"""

from __future__ import annotations

import json

from conftest import COUNT_COMPOSITIONS_AND_VALIDATIONS, QUICK, run_cli, sweep_argv

# Hydra's own start composes the sweep's config twice (its mode, then its sweeper's config): not a run's
HYDRA_START = 2

COUNTING = (
    """
import atexit, json, runpy, sys
out, sys.argv = sys.argv[1], sys.argv[2:]
counts = {"validations": 0, "compositions": 0}
"""
    + COUNT_COMPOSITIONS_AND_VALIDATIONS
    + """
atexit.register(lambda: open(out, "w").write(json.dumps(counts)))
runpy.run_path(sys.argv[0], run_name="__main__")
"""
)


def counted(tmp_path, argv: list[str]) -> tuple[dict, object]:
    """Run `python <argv>` with the counters; returns the counts of the user's process and the process."""
    out = tmp_path / "counts.json"
    done = run_cli("-c", COUNTING, str(out), *argv, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done


def test_a_plain_run_is_composed_and_validated_once(tiny_conf, tmp_path):
    argv = ["run.py", f"hydra.searchpath=[file://{tiny_conf}]", "backbone=tiny-bert"]
    counts, _ = counted(tmp_path, [*argv, f"paths.runs_root={tmp_path / 'runs'}", *QUICK])
    assert counts == {"validations": 1, "compositions": 1}


def test_a_plain_run_with_a_hydra_setting_is_validated_once(tiny_conf, tmp_path):
    """R23 F1: a hydra.* setting starts Hydra (which composes the config twice itself), and its job executes
    the run the preflight validated: it was validated a second time by the job."""
    argv = ["run.py", f"hydra.searchpath=[file://{tiny_conf}]", "backbone=tiny-bert", "hydra.job.chdir=false"]
    counts, _ = counted(tmp_path, [*argv, f"paths.runs_root={tmp_path / 'runs'}", *QUICK])
    assert counts == {"validations": 1, "compositions": 1 + HYDRA_START}, counts


def test_a_plain_budget_run_is_validated_once(tiny_conf, tmp_path):
    """R23 F10: the id of a `budget=` run holds what the budget chose (and the rule that identifies it); its
    id, stale check and record each resolved the whole run again (7 validations for one run)."""
    argv = [
        "run.py",
        f"hydra.searchpath=[file://{tiny_conf}]",
        "backbone=tiny-bert",
        "method=lora",
        "budget=bitfit",
    ]
    counts, _ = counted(tmp_path, [*argv, f"paths.runs_root={tmp_path / 'runs'}", *QUICK])
    assert counts == {"validations": 1, "compositions": 1}, counts


def test_a_budget_sweep_validates_its_config_once(tiny_conf, tmp_path):
    """R23 F10: 2 runs of one `budget=` config but the seed: the plan's ids (a seed's hash) took the budget's
    choice from resolving the run again, and each other budget_rule from one more resolve."""
    argv = sweep_argv(tiny_conf, tmp_path, "backbone=tiny-bert", "method=lora", "budget=bitfit", "seed=1,2")
    counts, done = counted(tmp_path, argv)
    assert "2 runs (2 new); launching 2" in done.stdout
    assert counts == {"validations": 1, "compositions": HYDRA_START}, counts


def test_a_sweep_composes_and_validates_each_distinct_config_once(tiny_conf, tmp_path):
    """4 runs of 2 distinct configs but their seeds (lora, bitfit): the user's process validates each config
    once and composes each once (the plan's), besides Hydra's own start."""
    argv = sweep_argv(tiny_conf, tmp_path, "backbone=tiny-bert", "method=lora,bitfit", "seed=1,2")
    counts, done = counted(tmp_path, argv)
    assert "4 runs (4 new); launching 4" in done.stdout
    assert counts["validations"] <= 2, counts
    assert counts["compositions"] - HYDRA_START <= 2, counts


def test_a_sweep_of_one_config_plans_on_hydras_own_composition(tiny_conf, tmp_path):
    """2 runs of one config but the seed: the plan takes the config Hydra's start composed (the sweeper's
    own, the command line but its sweep values) as the base of both runs, and validates it once."""
    argv = sweep_argv(tiny_conf, tmp_path, "backbone=tiny-bert", "seed=1,2")
    counts, done = counted(tmp_path, argv)
    assert "2 runs (2 new); launching 2" in done.stdout
    assert counts == {"validations": 1, "compositions": HYDRA_START}, counts


def test_completing_a_group_choice_composes_nothing_and_imports_no_torch():
    """Tab completion of `method=lo` took about 7 s a key press: run.py registered the base nodes (the
    methods' modules: torch) although Hydra lists a group's options from its files without composing. Keys
    (`trainer.max_st`) still compose, and get the base nodes, whose modules no longer import torch at the top
    (R23 F4)."""
    script = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules))\n"
        "sys.argv = ['run.py', '-sc', 'query=bash']\n"
        "runpy.run_path('run.py', run_name='__main__')\n"
    )
    for line, answer, torch in [
        ("python run.py method=lo", "method=lora", False),
        ("python run.py trainer.max_st", "trainer.max_steps=", False),  # composes: the methods load no torch
    ]:
        done = run_cli("-c", script, env={"COMP_LINE": line, "COMP_POINT": str(len(line))})
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.splitlines() == [answer, f"torch imported: {torch}"], done.stdout


PREFLIGHT_COUNTING = (
    """
import json, sys
out, argv = sys.argv[1], sys.argv[2:]
counts = {"validations": 0, "compositions": 0}
"""
    + COUNT_COMPOSITIONS_AND_VALIDATIONS
    + """
from petsweep.cli import hydra_argv, preflight
from petsweep.compose.nodes import register_base_nodes
register_base_nodes()
argv = hydra_argv(argv)
preflight(argv)
open(out, "w").write(json.dumps({**counts, "argv": argv}))
"""
)


def test_an_optuna_sweep_is_composed_once_per_variant_before_it_starts(tiny_conf, tmp_path):
    """A sweep of another sweeper (Optuna) reaches petsweep only as overrides, so run.py's preflight
    validates every value of each axis (3 variants: lora and bitfit at the first lr, lora at the second)
    and sets the study's direction from each one's optimised metric. The direction composed every variant
    again (5 compositions before, #23 review); now it reads the configs the validation composed: one Hydra
    composition per distinct choice of groups (lora, bitfit), a variant's lr set on a copy. Counted in the
    preflight alone: the trials are Optuna's."""
    argv = [
        "-m",
        "hydra/sweeper=optuna",
        f"hydra.searchpath=[file://{tiny_conf}]",
        f"paths.runs_root={tmp_path / 'runs'}",
        "backbone=tiny-bert",
        "method=lora,bitfit",
        "method.lr=choice(0.001,0.01)",
    ]
    out = tmp_path / "counts.json"
    done = run_cli("-c", PREFLIGHT_COUNTING, str(out), *argv, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(out.read_text())
    assert "hydra.sweeper.direction=maximize" in counts["argv"]  # accuracy: greater is better
    assert (counts["validations"], counts["compositions"]) == (3, 2), counts
